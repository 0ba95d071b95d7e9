/** What every page of the console is given by the frame around it (main.tsx). */
import type { Api, Me } from "./api";
import type { Language, Strings } from "./i18n";

/**
 * A page's props. A page keeps its own strings in a module of its own (``<page>-strings.ts``,
 * both languages, chosen with ``language``) and its styles in its own CSS file; ``t`` holds
 * the frame's strings shared by every page.
 */
export interface PageProps {
  api: Api;
  /** The signed-in person's id in goals. */
  person: string;
  /** Who they are to goalwatch (GET /v1/me); roles decide which pages the frame offers. */
  me: Me | null;
  t: Strings;
  language: Language;
  /** Call when an API answers 401: the frame signs the person out. */
  onSignedOut: () => void;
  /** Where the router shows the page (preact-iso reads it; the page does not). */
  path?: string;
  default?: boolean;
}

/** Whether ``me`` holds ``role`` org-wide (hr_admin, operator). */
export function holds(me: Me | null, role: string): boolean {
  return me?.roles.includes(role) ?? false;
}
