/** The console's entry: read the configuration, finish or start signing in, show the inbox. */
import { render } from "preact";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";

import { Api, SignedOut } from "./api";
import {
  completeSignIn,
  currentSession,
  isCallback,
  type Session,
  signIn,
  signOut,
} from "./auth";
import { type ConsoleConfig, loadConfig } from "./config";
import { browserLanguage, type Language, languageOf, strings } from "./i18n";
import { Inbox } from "./inbox";
import "./style.css";

interface Props {
  config: ConsoleConfig;
  initial: Session | null;
  initialProblem: string | null;
}

function App({ config, initial, initialProblem }: Props) {
  const [session, setSession] = useState<Session | null>(initial);
  const [language, setLanguage] = useState<Language>(browserLanguage());
  const [expired, setExpired] = useState(false);
  // Their name as goals has it (the provider's may be only an id).
  const [name, setName] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(initialProblem);
  const t = strings(language);
  const api = useMemo(() => (session ? new Api(config, session) : null), [config, session]);

  const signedOut = useCallback(() => {
    signOut();
    setSession(null);
    setExpired(true);
  }, []);

  useEffect(() => {
    document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  }, [language]);

  useEffect(() => {
    // The person's own language, as goals has it; the browser's until it answers.
    setName(null);
    if (api === null || session === null) {
      return;
    }
    api
      .person(session.person)
      .then((person) => {
        setName(person?.name ?? null);
        const chosen = languageOf(person?.language);
        if (chosen !== null) {
          setLanguage(chosen);
        }
      })
      .catch((error: unknown) => {
        if (error instanceof SignedOut) {
          signedOut();
        }
      });
  }, [api, session, signedOut]);

  const start = () => {
    setProblem(null);
    signIn(config).catch((error: unknown) => setProblem(String(error)));
  };

  return (
    <>
      <header class="bar">
        <span class="brand">{t.title}</span>
        <nav>
          <a href="/" aria-current="page">
            {t.inbox}
          </a>
        </nav>
        {session !== null && (
          <span class="who">
            <span data-testid="person">{name || session.name || session.person}</span>
            <button
              type="button"
              class="secondary"
              data-testid="sign-out"
              onClick={() => {
                signOut();
                setSession(null);
                setExpired(false);
              }}
            >
              {t.signOut}
            </button>
          </span>
        )}
      </header>
      <main>
        {session === null || api === null ? (
          <section class="sign-in">
            <p>{expired ? t.signedOutExpired : t.signInIntro}</p>
            {problem !== null && (
              <p class="problem" role="alert">
                {t.failed(problem)}
              </p>
            )}
            <button type="button" data-testid="sign-in" onClick={start}>
              {t.signIn}
            </button>
          </section>
        ) : (
          <Inbox
            api={api}
            person={session.person}
            t={t}
            language={language}
            onSignedOut={signedOut}
          />
        )}
      </main>
    </>
  );
}

async function boot(root: HTMLElement): Promise<void> {
  const config = await loadConfig();
  let session = currentSession();
  let problem: string | null = null;
  if (isCallback()) {
    try {
      session = await completeSignIn(config);
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
  }
  render(<App config={config} initial={session} initialProblem={problem} />, root);
}

const root = document.getElementById("app");
if (root !== null) {
  boot(root).catch((error: unknown) => {
    root.textContent = `goalwatch console: ${String(error)}`;
  });
}
