/**
 * Every string the console shows, in each language it speaks. A page takes the table of
 * the signed-in person's language (their record in goals), or else the browser's.
 */

export type Language = "zh" | "en";

const en = {
  title: "goalwatch",
  inbox: "Inbox",
  goals: "Goals",
  rules: "Rules",
  operations: "Operations",
  notFound: "There is no such page.",
  notAllowed: "Your roles do not open this page.",
  signIn: "Sign in",
  signOut: "Sign out",
  signInIntro: "Sign in to see the alerts about you and your teams.",
  signedOutExpired: "Your session has ended; sign in again.",
  signingIn: "Signing in…",
  loading: "Loading…",
  live: "Live",
  reconnecting: "Reconnecting…",
  filterState: "State",
  filterSeverity: "Severity",
  onlyMine: "Addressed to me",
  all: "All",
  noAlerts: "No alerts match.",
  acknowledge: "Acknowledge",
  acknowledging: "Acknowledging…",
  ackedBy: (who: string, when: string) => `Acknowledged by ${who}, ${when}`,
  you: "you",
  resolvedAt: (when: string) => `Resolved ${when}`,
  firedAt: (when: string) => `Fired ${when}`,
  about: (subject: string) => `About ${subject}`,
  state: { firing: "Firing", resolved: "Resolved" } as Record<string, string>,
  severity: { info: "Info", warning: "Warning", critical: "Critical" } as Record<string, string>,
  failed: (what: string) => `Something went wrong: ${what}`,
  moreAlerts: "Show more",
};

/** The strings of one language. */
export type Strings = typeof en;

const zh: Strings = {
  title: "goalwatch",
  inbox: "收件箱",
  goals: "目标",
  rules: "规则",
  operations: "运维",
  notFound: "没有这个页面。",
  notAllowed: "您的角色无权查看此页面。",
  signIn: "登录",
  signOut: "退出",
  signInIntro: "登录后查看与您和您的团队有关的预警。",
  signedOutExpired: "会话已结束，请重新登录。",
  signingIn: "正在登录…",
  loading: "正在加载…",
  live: "实时",
  reconnecting: "正在重新连接…",
  filterState: "状态",
  filterSeverity: "级别",
  onlyMine: "只看发给我的",
  all: "全部",
  noAlerts: "没有符合条件的预警。",
  acknowledge: "确认处理",
  acknowledging: "正在确认…",
  ackedBy: (who, when) => `${who} 已于 ${when} 确认`,
  you: "您",
  resolvedAt: (when) => `已于 ${when} 解除`,
  firedAt: (when) => `触发于 ${when}`,
  about: (subject) => `对象：${subject}`,
  state: { firing: "预警中", resolved: "已解除" },
  severity: { info: "提示", warning: "警告", critical: "严重" },
  failed: (what) => `出错了：${what}`,
  moreAlerts: "显示更多",
};

const TABLES: Record<Language, Strings> = { en, zh };

/** The strings of ``language``. */
export function strings(language: Language): Strings {
  return TABLES[language];
}

/** ``value`` if it names a language the console speaks, else ``null``. */
export function languageOf(value: unknown): Language | null {
  if (typeof value !== "string") {
    return null;
  }
  const base = value.toLowerCase().split(/[-_]/)[0];
  return base === "zh" || base === "en" ? base : null;
}

/** The browser's preferred language among those the console speaks (English otherwise). */
const CHOSEN_KEY = "goalwatch.language";

/** The language the person chose in this browser (the header's switch), if they did. */
export function chosenLanguage(): Language | null {
  try {
    return languageOf(localStorage.getItem(CHOSEN_KEY));
  } catch {
    return null; // storage refused (private mode): no choice kept
  }
}

/** Keep ``language`` as the person's choice in this browser. */
export function chooseLanguage(language: Language): void {
  try {
    localStorage.setItem(CHOSEN_KEY, language);
  } catch {
    // storage refused: the choice lasts as long as the page
  }
}

export function browserLanguage(): Language {
  for (const candidate of navigator.languages ?? [navigator.language]) {
    const found = languageOf(candidate);
    if (found !== null) {
      return found;
    }
  }
  return "en";
}
