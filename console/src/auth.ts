/**
 * Sign-in: OpenID Connect authorization code with PKCE, in the browser, with oauth4webapi.
 *
 * The access token lives in memory and in sessionStorage (this tab only, gone when it
 * closes); it is sent as `Authorization: Bearer`, never as a cookie, so there is nothing for
 * another site to ride on (no CSRF). Signing out forgets it.
 */
import * as oauth from "oauth4webapi";

import type { ConsoleConfig } from "./config";

/** A signed-in person, as the console keeps them. */
export interface Session {
  accessToken: string;
  /** When the access token stops working (ms since the epoch). */
  expiresAt: number;
  /** Their person id in goals (the configured claim of the ID token). */
  person: string;
  /** Their name, for the header. */
  name: string;
  /**
   * When the provider grants refresh tokens: the one to use next (each is used once and
   * replaced), so the console renews the access token before it expires, without a page.
   */
  refreshToken?: string;
}

const SESSION_KEY = "goalwatch.session";
const PENDING_KEY = "goalwatch.signin";
export const CALLBACK_PATH = "/callback";

interface Pending {
  verifier: string;
  state: string;
  /** The console's address when sign-in began, to come back to. */
  returnTo: string;
}

function insecureAllowed(config: ConsoleConfig): boolean {
  // Plain HTTP only for a provider on this machine (`make run`, the tests); anywhere else
  // oauth4webapi's refusal of http:// stands.
  const host = new URL(config.issuer).hostname;
  return ["127.0.0.1", "localhost", "[::1]"].includes(host);
}

function requestOptions(config: ConsoleConfig): { [oauth.allowInsecureRequests]?: boolean } {
  return insecureAllowed(config) ? { [oauth.allowInsecureRequests]: true } : {};
}

async function discover(config: ConsoleConfig): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(config.issuer);
  const response = await oauth.discoveryRequest(issuer, {
    algorithm: "oidc",
    ...requestOptions(config),
  });
  return oauth.processDiscoveryResponse(issuer, response);
}

function redirectUri(): string {
  return `${window.location.origin}${CALLBACK_PATH}`;
}

/** Send the browser to the provider's sign-in page. */
export async function signIn(config: ConsoleConfig): Promise<void> {
  const server = await discover(config);
  if (!server.authorization_endpoint) {
    throw new Error(`${config.issuer} has no authorization endpoint`);
  }
  const pending: Pending = {
    verifier: oauth.generateRandomCodeVerifier(),
    state: oauth.generateRandomState(),
    returnTo: `${window.location.pathname}${window.location.search}`,
  };
  sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
  const url = new URL(server.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: config.client_id,
    redirect_uri: redirectUri(),
    response_type: "code",
    scope: "openid profile email",
    state: pending.state,
    code_challenge: await oauth.calculatePKCECodeChallenge(pending.verifier),
    code_challenge_method: "S256",
  }).toString();
  window.location.assign(url.toString());
}

/** Whether the browser is back from the provider with a code (or an error) to finish. */
export function isCallback(): boolean {
  return window.location.pathname === CALLBACK_PATH;
}

/** Redeem the code the provider sent back, keep the session, and clean the address bar. */
export async function completeSignIn(config: ConsoleConfig): Promise<Session> {
  const opened = new URL(window.location.href);
  const saved = sessionStorage.getItem(PENDING_KEY);
  sessionStorage.removeItem(PENDING_KEY);
  // The code is single-use: keep it out of the history and of a reload.
  window.history.replaceState(null, "", "/");
  if (saved === null) {
    throw new Error("no sign-in was started in this tab");
  }
  const pending = JSON.parse(saved) as Pending;
  // Back where they were: a path of the console only, never another site.
  if (pending.returnTo.startsWith("/") && !pending.returnTo.startsWith("//")) {
    const back = pending.returnTo.startsWith(CALLBACK_PATH) ? "/" : pending.returnTo;
    window.history.replaceState(null, "", back);
  }
  const server = await discover(config);
  const client: oauth.Client = { client_id: config.client_id };
  const params = oauth.validateAuthResponse(server, client, opened, pending.state);
  const response = await oauth.authorizationCodeGrantRequest(
    server,
    client,
    oauth.None(),
    params,
    redirectUri(),
    pending.verifier,
    requestOptions(config),
  );
  const result = await oauth.processAuthorizationCodeResponse(server, client, response);
  const claims = oauth.getValidatedIdTokenClaims(result);
  const personClaim = claims?.[config.person_claim];
  const session: Session = {
    accessToken: result.access_token,
    expiresAt: Date.now() + (result.expires_in ?? 3600) * 1000,
    person: typeof personClaim === "string" ? personClaim : String(claims?.sub ?? ""),
    name: typeof claims?.["name"] === "string" ? claims["name"] : "",
    ...(result.refresh_token === undefined ? {} : { refreshToken: result.refresh_token }),
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  return session;
}

/**
 * A renewed session from ``session``'s refresh token (the provider replaces the token),
 * kept in this tab. Throws when the provider refuses it (the sign-in has ended): the
 * person must sign in again.
 */
export async function refreshSession(config: ConsoleConfig, session: Session): Promise<Session> {
  if (session.refreshToken === undefined) {
    throw new Error("this session cannot be renewed");
  }
  const server = await discover(config);
  const client: oauth.Client = { client_id: config.client_id };
  const response = await oauth.refreshTokenGrantRequest(
    server,
    client,
    oauth.None(),
    session.refreshToken,
    requestOptions(config),
  );
  const result = await oauth.processRefreshTokenResponse(server, client, response);
  const renewed: Session = {
    ...session,
    accessToken: result.access_token,
    expiresAt: Date.now() + (result.expires_in ?? 3600) * 1000,
    refreshToken: result.refresh_token ?? session.refreshToken,
  };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(renewed));
  return renewed;
}

/** How long before its token expires a session is renewed (ms). */
export const RENEW_BEFORE_MS = 60_000;

/** The session kept in this tab, if it has not expired. */
export function currentSession(): Session | null {
  const saved = sessionStorage.getItem(SESSION_KEY);
  if (saved === null) {
    return null;
  }
  const session = JSON.parse(saved) as Session;
  // An expired token with a refresh token is renewed by the page, not forgotten.
  if (session.expiresAt <= Date.now() && session.refreshToken === undefined) {
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }
  return session;
}

/** Forget the session: the token is gone from this tab. */
export function signOut(): void {
  sessionStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem(PENDING_KEY);
}
