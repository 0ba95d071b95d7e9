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
  type Session,
  signIn,
  signOut,
} from "./auth";
import { type ConsoleConfig, loadConfig } from "./config";
import { browserLanguage, type Language, languageOf, type Strings, strings } from "./i18n";
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
  const [language, setLanguage] = useState<Language>(browserLanguage());
  const [expired, setExpired] = useState(false);
  // Their name as goals has it (the provider's may be only an id).
  const [name, setName] = useState<string | null>(null);
  const [me, setMe] = useState<Me | null>(null);
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
        const chosen = languageOf(found.language);
        if (chosen !== null) {
          setLanguage(chosen);
        }
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
  }, [api, session, signedOut]);

  const start = () => {
    setProblem(null);
    signIn(config).catch((error: unknown) => setProblem(String(error)));
  };

  return (
    <>
      <header class="bar">
        <span class="brand">{t.title}</span>
        {session !== null && <Nav t={t} me={me} />}
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
