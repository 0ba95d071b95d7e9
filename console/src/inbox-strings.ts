/**
 * The inbox's own strings, in each language the console speaks (the frame's shared ones,
 * and the inbox's first ones, stay in i18n.ts). TypeScript refuses a table missing one.
 */
import type { Language } from "./i18n";

const en = {
  filterKind: "Kind",
  filterRule: "Rule",
  filterOrgUnit: "Org unit",
  filterSince: "Updated",
  since: { "": "Any time", "1d": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days" },
  groupBy: "Group by",
  moreFilters: (active: number) => (active > 0 ? `Filters (${active} on)` : "Filters"),
  group: {
    "": "No grouping",
    rule: "Rule",
    subject: "Person",
    org_unit: "Org unit",
    kind: "Kind",
  },
  kind: {
    threshold: "Threshold",
    overdue: "Overdue",
    fraud: "Fraud",
    dependency_impact: "Dependency impact",
  } as Record<string, string>,
  groupCount: (count: number, firing: number) =>
    firing > 0 ? `${count} alerts, ${firing} firing` : `${count} alerts`,
  noGroup: "None",
  history: (metric: string) => `History of ${metric}`,
  impact: (goal: string) => `Goals resting on “${goal}”`,
  impactMore: (shown: number, total: number, owners: number) =>
    `${shown} of yours shown; ${total} goal${total === 1 ? "" : "s"} of ${owners} owner${owners === 1 ? "" : "s"} affected in all`,
  impactStep: (depth: number, weight: number) =>
    `${depth} link${depth === 1 ? "" : "s"} away, ${Math.round(weight * 100)}% of its weight`,
  owner: (name: string) => `owner: ${name}`,
  told: "Told",
  toldOthers: (names: string) => `Also told: ${names}`,
  toldNobodyElse: "Nobody else was told.",
  role: {
    subject: "about them",
    manager: "manager",
    unit_head: "unit head",
    hrbp: "HRBP",
    explicit: "named by the rule",
    group: "group",
  } as Record<string, string>,
  deliveries: "Who was told, where",
  hideDeliveries: "Hide",
  noDeliveries: "No channel has sent it yet (it is in the inbox).",
  channel: {
    inbox: "Inbox",
    webhook: "Webhook",
    email: "E-mail",
    wecom: "WeCom",
    dingtalk: "DingTalk",
    feishu: "Feishu",
    slack: "Slack",
    alertmanager: "Alertmanager",
  } as Record<string, string>,
  deliveryStatus: {
    sent: "sent",
    failed: "failed",
    silenced: "silenced",
    held: "held back",
  } as Record<string, string>,
  comments: "Comments",
  comment: "Comment",
  commentPlaceholder: "What was done, what is next…",
  send: "Post",
  sending: "Posting…",
  cancel: "Cancel",
  silence: "Silence",
  silenceFor: "For",
  silenceHours: { 1: "1 hour", 8: "8 hours", 24: "1 day", 168: "7 days" } as Record<number, string>,
  silenceWhy: "Why",
  silenceWhyPlaceholder: "e.g. known data error, fixed tomorrow",
  silenceNow: "Silence this alert",
  silenced: (until: string) => `Silenced on every channel until ${until}.`,
  silenceNotAllowed:
    "Only HR administrators can silence alerts: a silence quiets an alert on every channel, for everyone it is sent to. Ask your HR administrator, or acknowledge it.",
  in: (unit: string) => `in ${unit}`,
};

/** The inbox's strings of one language. */
export type InboxStrings = typeof en;

const zh: InboxStrings = {
  filterKind: "类型",
  filterRule: "规则",
  filterOrgUnit: "部门",
  filterSince: "更新时间",
  since: { "": "不限", "1d": "最近 24 小时", "7d": "最近 7 天", "30d": "最近 30 天" },
  groupBy: "分组",
  moreFilters: (active) => (active > 0 ? `筛选（${active} 项）` : "筛选"),
  group: { "": "不分组", rule: "规则", subject: "人员", org_unit: "部门", kind: "类型" },
  kind: {
    threshold: "阈值",
    overdue: "逾期",
    fraud: "造假嫌疑",
    dependency_impact: "依赖影响",
  },
  groupCount: (count, firing) =>
    firing > 0 ? `${count} 条预警，${firing} 条预警中` : `${count} 条预警`,
  noGroup: "无",
  history: (metric) => `${metric} 的历史`,
  impact: (goal) => `依赖“${goal}”的目标`,
  impactMore: (shown, total, owners) =>
    `此处列出您的 ${shown} 个；共影响 ${owners} 位负责人的 ${total} 个目标`,
  impactStep: (depth, weight) => `相隔 ${depth} 层，承载 ${Math.round(weight * 100)}% 权重`,
  owner: (name) => `负责人：${name}`,
  told: "已通知",
  toldOthers: (names) => `同时通知了：${names}`,
  toldNobodyElse: "没有通知其他人。",
  role: {
    subject: "当事人",
    manager: "上级",
    unit_head: "部门负责人",
    hrbp: "HRBP",
    explicit: "规则指定",
    group: "群组",
  },
  deliveries: "通知了谁、通过什么渠道",
  hideDeliveries: "收起",
  noDeliveries: "尚无渠道发送（已在收件箱中）。",
  channel: {
    inbox: "收件箱",
    webhook: "Webhook",
    email: "邮件",
    wecom: "企业微信",
    dingtalk: "钉钉",
    feishu: "飞书",
    slack: "Slack",
    alertmanager: "Alertmanager",
  },
  deliveryStatus: { sent: "已发送", failed: "发送失败", silenced: "已静默", held: "暂缓发送" },
  comments: "评论",
  comment: "评论",
  commentPlaceholder: "做了什么、下一步是什么…",
  send: "发表",
  sending: "正在发表…",
  cancel: "取消",
  silence: "静默",
  silenceFor: "时长",
  silenceHours: { 1: "1 小时", 8: "8 小时", 24: "1 天", 168: "7 天" },
  silenceWhy: "原因",
  silenceWhyPlaceholder: "例如：已知数据错误，明天修复",
  silenceNow: "静默此预警",
  silenced: (until) => `已在所有渠道静默，直到 ${until}。`,
  silenceNotAllowed:
    "只有 HR 管理员可以静默预警：静默会让该预警在所有渠道上对所有接收人都不再发送。请联系 HR 管理员，或确认处理此预警。",
  in: (unit) => `所属：${unit}`,
};

const TABLES: Record<Language, InboxStrings> = { en, zh };

/** The inbox's strings of ``language``. */
export function inboxStrings(language: Language): InboxStrings {
  return TABLES[language];
}
