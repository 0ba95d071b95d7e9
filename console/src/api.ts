/** Calls to the four services' APIs with the signed-in person's bearer token. */
import { fetchEventSource } from "@microsoft/fetch-event-source";

import type { Session } from "./auth";
import type { ConsoleConfig } from "./config";

/** One inbox entry, as GET /v1/alerts lists it (the fields the console shows). */
export interface InboxAlert {
  id: string;
  fingerprint: string;
  rule_id: string;
  rule_name: string;
  kind: string;
  severity: "info" | "warning" | "critical";
  state: "firing" | "resolved";
  message: string;
  subject: { id: string; name?: string | null };
  value?: number | null;
  metric?: string | null;
  started_at: string;
  fired_at: string;
  updated_at: string;
  resolved_at?: string | null;
  acked_at?: string | null;
  acked_by?: string | null;
  ack_comment?: string | null;
}

/** GET /v1/alerts's answer. */
export interface InboxPage {
  alerts: InboxAlert[];
  next_cursor: string | null;
}

/** The inbox filters the console offers. */
export interface InboxFilters {
  state: "" | "firing" | "resolved";
  severity: "" | "info" | "warning" | "critical";
  /** Only alerts addressed to the signed-in person (else: all they may see). */
  onlyMine: boolean;
}

/** A person's record in goals (GET /v1/people/{id}), what the console uses of it. */
export interface Person {
  id: string;
  name: string;
  language?: string | null;
}

/** GET /v1/me on goals: the signed-in person and the roles they hold org-wide. */
export interface Me {
  person_id: string;
  name: string | null;
  language: string | null;
  /** hr_admin, operator, ... (manager, HRBP and employee follow from the org chart). */
  roles: string[];
  grants_unknown: boolean;
}

/** Which of the four services an API call goes to. */
export type Service = keyof ConsoleConfig["services"];

/** The API refused the token (expired or revoked): the person must sign in again. */
export class SignedOut extends Error {}

/** An API answered with an error; ``detail`` is its problem+json detail when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(`${status}: ${detail}`);
  }
}

/** The APIs, as one signed-in person calls them. */
export class Api {
  constructor(
    private readonly config: ConsoleConfig,
    private session: Session,
  ) {}

  /** Use ``session``'s (renewed) token from now on; pages keep the same ``Api``. */
  renew(session: Session): void {
    this.session = session;
  }

  private headers(): Record<string, string> {
    return { Authorization: `Bearer ${this.session.accessToken}`, Accept: "application/json" };
  }

  private async call<T>(url: string, init: RequestInit = {}): Promise<T> {
    const response = await fetch(url, {
      ...init,
      headers: { ...this.headers(), ...(init.headers as Record<string, string> | undefined) },
    });
    if (response.status === 401) {
      throw new SignedOut("the token was refused");
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        const body = (await response.json()) as { detail?: string };
        detail = body.detail ?? detail;
      } catch {
        // not problem+json: the status says enough
      }
      throw new ApiError(response.status, detail);
    }
    if (response.status === 204) {
      return null as T;
    }
    return (await response.json()) as T;
  }

  /**
   * GET a JSON document from ``service`` (``path`` from its root, e.g. ``/v1/goals``).
   * Throws :class:`SignedOut` on 401 and :class:`ApiError` (with the problem's detail) on
   * any other error. Pages add their own calls on top of this and :meth:`send`.
   */
  async get<T>(service: Service, path: string, query?: URLSearchParams): Promise<T> {
    const text = query?.toString() ?? "";
    const suffix = text ? `?${text}` : "";
    return this.call<T>(`${this.config.services[service]}${path}${suffix}`);
  }

  /** Send ``body`` as JSON with ``method`` to ``service``; the answer's JSON, or null (204). */
  async send<T>(service: Service, method: string, path: string, body?: unknown): Promise<T> {
    return this.call<T>(`${this.config.services[service]}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }),
    });
  }

  /** Who the signed-in person is and the roles they hold (GET /v1/me on goals). */
  async me(): Promise<Me> {
    return this.get<Me>("goals", "/v1/me");
  }

  /** The person's record in goals, or ``null`` if they have none (an operator, say). */
  async person(id: string): Promise<Person | null> {
    try {
      return await this.call<Person>(
        `${this.config.services.goals}/v1/people/${encodeURIComponent(id)}`,
      );
    } catch (error) {
      if (error instanceof ApiError && (error.status === 404 || error.status === 403)) {
        return null;
      }
      throw error;
    }
  }

  private inboxQuery(filters: InboxFilters, withState: boolean): URLSearchParams {
    const query = new URLSearchParams();
    if (filters.onlyMine) {
      query.set("recipient", this.session.person);
    }
    if (withState && filters.state) {
      query.set("state", filters.state);
    }
    if (filters.severity) {
      query.set("severity", filters.severity);
    }
    return query;
  }

  /** A page of the inbox, newest update first. */
  async alerts(filters: InboxFilters, cursor: string | null = null): Promise<InboxPage> {
    const query = this.inboxQuery(filters, true);
    query.set("limit", "50");
    if (cursor !== null) {
      query.set("cursor", cursor);
    }
    return this.call<InboxPage>(`${this.config.services.notifier}/v1/alerts?${query}`);
  }

  /** Acknowledge one alert episode as the signed-in person. */
  async acknowledge(id: string, comment = ""): Promise<InboxAlert> {
    return this.call<InboxAlert>(
      `${this.config.services.notifier}/v1/alerts/${encodeURIComponent(id)}/ack`,
      {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ comment }),
      },
    );
  }

  /**
   * Follow the inbox's changes (GET /v1/alerts/stream) until ``signal`` aborts.
   *
   * ``onListening`` is called each time the stream (re)opens and the notifier says it is
   * listening: from then on no change is missed, so that is the moment to (re)read the list.
   * The state filter is applied by the caller: an alert leaving it must leave the list too.
   */
  follow(
    filters: InboxFilters,
    signal: AbortSignal,
    handlers: {
      onListening: () => void;
      onAlert: (alert: InboxAlert) => void;
      onTrouble: () => void;
      onSignedOut: () => void;
    },
  ): void {
    const url = `${this.config.services.notifier}/v1/alerts/stream?${this.inboxQuery(filters, false)}`;
    void fetchEventSource(url, {
      headers: this.headers(),
      signal,
      openWhenHidden: true,
      // Each (re)connection carries the current token: a renewed one after a renewal.
      fetch: listeningTap(handlers.onListening, () => this.headers()),
      onopen: async (response) => {
        if (response.status === 401) {
          handlers.onSignedOut();
          throw new SignedOut("the token was refused");
        }
        if (!response.ok) {
          handlers.onTrouble();
          throw new ApiError(response.status, response.statusText);
        }
      },
      onmessage: (message) => {
        if (message.data) {
          handlers.onAlert(JSON.parse(message.data) as InboxAlert);
        }
      },
      onerror: (error: unknown) => {
        if (error instanceof SignedOut) {
          throw error; // stop: retrying with the same token cannot help
        }
        handlers.onTrouble();
        return 2000; // retry in 2 s
      },
    }).catch(() => undefined);
  }
}

const LISTENING = /^:\s?listening\s*$/m;

/**
 * A fetch whose response body is watched for the stream's `: listening` comment, which the
 * event-source parser drops: it says the notifier has subscribed to the inbox's changes.
 */
function listeningTap(
  onListening: () => void,
  headers: () => Record<string, string>,
): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, {
      ...init,
      headers: { ...(init?.headers as Record<string, string> | undefined), ...headers() },
    });
    if (!response.ok || response.body === null) {
      return response;
    }
    const decoder = new TextDecoder();
    let head = "";
    let seen = false;
    const tap = new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (!seen) {
          head += decoder.decode(chunk, { stream: true });
          if (LISTENING.test(head)) {
            seen = true;
            head = "";
            onListening();
          }
        }
        controller.enqueue(chunk);
      },
    });
    return new Response(response.body.pipeThrough(tap), {
      status: response.status,
      statusText: response.statusText,
      headers: response.headers,
    });
  };
}
