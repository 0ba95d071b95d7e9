/** What the console service tells the page at /config.json (services/console/pages.py). */
export interface ConsoleConfig {
  /** The OpenID Connect provider's issuer URL. */
  issuer: string;
  /** The console's public client id at the provider. */
  client_id: string;
  /** The ID token claim holding the person's id in goals. */
  person_claim: string;
  /** The four APIs, as the browser reaches them. */
  services: {
    ingestion: string;
    goals: string;
    evaluator: string;
    notifier: string;
  };
}

/** Read /config.json from the console service. */
export async function loadConfig(): Promise<ConsoleConfig> {
  const response = await fetch("/config.json", { headers: { Accept: "application/json" } });
  if (!response.ok) {
    throw new Error(`/config.json answered ${response.status}`);
  }
  return (await response.json()) as ConsoleConfig;
}
