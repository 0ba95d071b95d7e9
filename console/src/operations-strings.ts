/** The operations page's strings, in each language the console speaks. */
import type { Language } from "./i18n";

const en = {
  intro: "What the pipeline owes, what it gave up on, and where notifications fail.",
  consumers: "Consumer lag",
  consumersHint: (seconds: number) =>
    `Read from JetStream every ${seconds} s; this page refreshes every few seconds.`,
  service: "Service",
  stream: "Stream",
  consumer: "Consumer",
  pending: "Pending",
  inFlight: "In flight",
  redelivered: "Redelivered",
  readAgo: "Read",
  secondsAgo: (seconds: number) => `${Math.round(seconds)} s ago`,
  noConsumers: "No counts yet.",
  partitions: (n: number) => `(${n} partitions, added up)`,
  behind: (which: string) => `behind: ${which}`,
  serviceDown: (service: string, what: string) => `${service} did not answer: ${what}`,
  deadLetters: "Dead letters",
  deadLettersHint: "Messages the pipeline gave up on, newest first. Fix the cause, then replay.",
  noDeadLetters: "No dead letters.",
  origin: "Origin",
  reason: "Reason",
  at: "When",
  payload: (bytes: number) => `Message (${bytes} bytes)`,
  truncated: "only its beginning is shown; the replay sends it whole",
  replay: "Replay",
  replayAsk: (subject: string, service: string) =>
    `Publish this message again on ${subject}, as ${service}?`,
  replayConfirm: "Yes, replay",
  cancel: "Cancel",
  replaying: "Replaying…",
  replayed: (when: string, who: string, stream: string, sequence: number) =>
    `Replayed ${when} by ${who} (${stream} message ${sequence})`,
  operatorOnly:
    "No service publishes on this subject (the server does): replay it as the NATS operator " +
    "(docs/operations.md).",
  failures: "Delivery failures",
  failuresHint: (hours: number) =>
    `Notifications given up on in the last ${hours} hours, by channel.`,
  noFailures: "No failed deliveries.",
  channel: "Channel",
  count: "Failed",
  latestFailures: "Latest failures",
  attempts: (n: number) => (n === 1 ? "1 attempt" : `${n} attempts`),
  rule: "Rule",
  refresh: "Refresh",
};

export type OperationsStrings = typeof en;

const zh: OperationsStrings = {
  intro: "流水线的积压、放弃处理的消息，以及通知失败的渠道。",
  consumers: "消费者积压",
  consumersHint: (seconds: number) => `每 ${seconds} 秒从 JetStream 读取一次；本页每隔几秒刷新。`,
  service: "服务",
  stream: "流",
  consumer: "消费者",
  pending: "待投递",
  inFlight: "处理中",
  redelivered: "重投",
  readAgo: "读取于",
  secondsAgo: (seconds: number) => `${Math.round(seconds)} 秒前`,
  noConsumers: "暂无数据。",
  partitions: (n: number) => `（${n} 个分区合计）`,
  behind: (which: string) => `积压：${which}`,
  serviceDown: (service: string, what: string) => `${service} 未响应：${what}`,
  deadLetters: "死信",
  deadLettersHint: "流水线放弃处理的消息，最新的在前。先排除原因，再重放。",
  noDeadLetters: "没有死信。",
  origin: "来源",
  reason: "原因",
  at: "时间",
  payload: (bytes: number) => `消息（${bytes} 字节）`,
  truncated: "只显示开头；重放时发送完整消息",
  replay: "重放",
  replayAsk: (subject: string, service: string) =>
    `以 ${service} 的身份将此消息重新发布到 ${subject}？`,
  replayConfirm: "确认重放",
  cancel: "取消",
  replaying: "正在重放…",
  replayed: (when: string, who: string, stream: string, sequence: number) =>
    `已于 ${when} 由 ${who} 重放（${stream} 第 ${sequence} 条）`,
  operatorOnly: "没有服务发布此主题（由服务器发布）：请以 NATS 管理员身份重放（见 docs/operations.md）。",
  failures: "投递失败",
  failuresHint: (hours: number) => `最近 ${hours} 小时内放弃投递的通知，按渠道统计。`,
  noFailures: "没有投递失败。",
  channel: "渠道",
  count: "失败数",
  latestFailures: "最近的失败",
  attempts: (n: number) => `尝试 ${n} 次`,
  rule: "规则",
  refresh: "刷新",
};

export function operationsStrings(language: Language): OperationsStrings {
  return language === "zh" ? zh : en;
}
