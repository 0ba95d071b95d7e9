/**
 * The console's entry: read the configuration, finish or start signing in, then the frame
 * (header, navigation) around the page the address names: the inbox (``/``), goals
 * (``/goals``), rules (``/rules``, ``/rules/<id>``, HR) or operations (``/operations``).
 */
import { type ComponentChildren, render } from "preact";
import { LocationProvider, lazy, Router, useLocation } from "preact-iso";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";

import { Api, type Me, SignedOut } from "./api";
import {
  completeSignIn,
  currentSession,
  isCallback,
  RENEW_BEFORE_MS,
  refreshSession,
  type Session,
  signIn,
  signOut,
} from "./auth";
import { type ConsoleConfig, loadConfig } from "./config";
import {
  browserLanguage,
  chooseLanguage,
  chosenLanguage,
  type Language,
  languageOf,
  type Strings,
  strings,
} from "./i18n";
import { Goals } from "./goals";
import { Inbox } from "./inbox";
import { Operations } from "./operations";
import { holds, type PageProps } from "./page";
import "./style.css";

// Loaded when first opened: its editor and chart are most of the console's code, and only
// HR admins open it.
const Rules = lazy(() => import("./rules").then((module) => module.Rules));

/** The pages of the navigation, in order, and the role each needs (none: everyone). */
const PAGES = [
  { path: "/", label: "inbox", role: null },
  { path: "/goals", label: "goals", role: null },
  { path: "/rules", label: "rules", role: "hr_admin" },
  { path: "/operations", label: "operations", role: "operator" },
] as const;

function Nav({ t, me }: { t: Strings; me: Me | null }) {
  const { path } = useLocation();
  return (
    <nav>
      {PAGES.filter((page) => page.role === null || holds(me, page.role)).map((page) => {
        const current = page.path === "/" ? path === "/" : path.startsWith(page.path);
        return (
          <a
            key={page.path}
            href={page.path}
            data-testid={`nav-${page.label}`}
            aria-current={current ? "page" : undefined}
          >
            {t[page.label]}
          </a>
        );
      })}
    </nav>
  );
}

/** 中文 | English: the person's choice, kept in this browser. */
function LanguageSwitch({
  language,
  onChoose,
}: {
  language: Language;
  onChoose: (language: Language) => void;
}) {
  return (
    <span class="languages" role="group" aria-label="Language / 语言">
      {(["zh", "en"] as const).map((option) => (
        <button
          key={option}
          type="button"
          lang={option === "zh" ? "zh-CN" : "en"}
          data-testid={`language-${option}`}
          aria-pressed={language === option}
          onClick={() => onChoose(option)}
        >
          {option === "zh" ? "中文" : "English"}
        </button>
      ))}
    </span>
  );
}

/** A page only ``role`` opens: the page, or a word on why not (the APIs refuse anyway). */
function Guarded({
  role,
  props,
  children,
}: {
  role: string;
  props: PageProps;
  children: ComponentChildren;
}) {
  if (props.me === null) {
    return <p class="muted">{props.t.loading}</p>;
  }
  return holds(props.me, role) ? <>{children}</> : <p role="alert">{props.t.notAllowed}</p>;
}

interface Props {
  config: ConsoleConfig;
  initial: Session | null;
  initialProblem: string | null;
}

function App({ config, initial, initialProblem }: Props) {
  const [session, setSession] = useState<Session | null>(initial);
  // The person's own choice in this browser first, then their record in goals, then the
  // browser's languages.
  const [chosen, setChosen] = useState<Language | null>(chosenLanguage());
  const [recorded, setRecorded] = useState<Language | null>(null);
  const language = chosen ?? recorded ?? browserLanguage();
  const [expired, setExpired] = useState(false);
  // Their name as goals has it (the provider's may be only an id).
  const [name, setName] = useState<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
  const [problem, setProblem] = useState<string | null>(initialProblem);
  const t = strings(language);
  const person = session?.person ?? null;
  // One Api per signed-in person: a renewed token is handed to it, so pages keep their state.
  const api = useMemo(() => (session ? new Api(config, session) : null), [config, person]);
  useEffect(() => {
    if (api !== null && session !== null) {
      api.renew(session);
    }
  }, [api, session]);

  const signedOut = useCallback(() => {
    signOut();
    setSession(null);
    setExpired(true);
  }, []);

  useEffect(() => {
    document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  }, [language]);

  useEffect(() => {
    // Who they are to goalwatch: their name and language as goals has them (the browser's
    // language until it answers), and the roles that decide which pages are offered.
    setName(null);
    setMe(null);
    if (api === null || session === null) {
      return;
    }
    api
      .me()
      .then((found) => {
        setMe(found);
        setName(found.name);
        setRecorded(languageOf(found.language));
      })
      .catch((error: unknown) => {
        if (error instanceof SignedOut) {
          signedOut();
        } else {
          // Goals did not answer: the inbox still works; pages needing a role wait.
          setMe({
            person_id: session.person,
            name: null,
            language: null,
            roles: [],
            grants_unknown: true,
          });
        }
      });
    // Not on a renewed token: who they are has not changed.
  }, [api, signedOut]);

  useEffect(() => {
    // Renew the token a minute before it expires, while the provider grants refresh tokens;
    // without one, the next API call answers 401 and the page asks to sign in again.
    if (session === null || session.refreshToken === undefined) {
      return;
    }
    const due = Math.max(0, session.expiresAt - Date.now() - RENEW_BEFORE_MS);
    const timer = window.setTimeout(() => {
      refreshSession(config, session).then(setSession, () => signedOut());
    }, due);
    return () => window.clearTimeout(timer);
  }, [config, session, signedOut]);

  const start = () => {
    setProblem(null);
    signIn(config).catch((error: unknown) => setProblem(String(error)));
  };

  return (
    <>
      <header class="bar">
        <span class="brand">{t.title}</span>
        {session !== null && <Nav t={t} me={me} />}
        <LanguageSwitch
          language={language}
          onChoose={(next) => {
            chooseLanguage(next);
            setChosen(next);
          }}
        />
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
          <Pages
            props={{ api, person: session.person, me, t, language, onSignedOut: signedOut }}
          />
        )}
      </main>
    </>
  );
}

function RulesPage(props: PageProps & { id?: string }) {
  return (
    <Guarded role="hr_admin" props={props}>
      <Rules {...props} />
    </Guarded>
  );
}

function OperationsPage(props: PageProps) {
  return (
    <Guarded role="operator" props={props}>
      <Operations {...props} />
    </Guarded>
  );
}

function NotFound({ t }: { t: Strings; default?: boolean }) {
  return <p role="alert">{t.notFound}</p>;
}

// Components, not closures: a page keeps its state while the frame re-renders around it.
function Pages({ props }: { props: PageProps }) {
  return (
    <Router>
      <Inbox path="/" {...props} />
      <Goals path="/goals/:id*" {...props} />
      <RulesPage path="/rules/:id*" {...props} />
      <OperationsPage path="/operations" {...props} />
      <NotFound default t={props.t} />
    </Router>
  );
}

async function boot(root: HTMLElement): Promise<void> {
  const config = await loadConfig();
  let session = currentSession();
  let problem: string | null = null;
  if (session !== null && session.expiresAt - Date.now() < RENEW_BEFORE_MS) {
    // Back in a tab whose token has run out: renew it before any page calls an API.
    try {
      session = await refreshSession(config, session);
    } catch {
      signOut();
      session = null;
    }
  }
  if (isCallback()) {
    try {
      session = await completeSignIn(config);
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
  }
  render(
    <LocationProvider>
      <App config={config} initial={session} initialProblem={problem} />
    </LocationProvider>,
    root,
  );
}

const root = document.getElementById("app");
if (root !== null) {
  boot(root).catch((error: unknown) => {
    root.textContent = `goalwatch console: ${String(error)}`;
  });
}
