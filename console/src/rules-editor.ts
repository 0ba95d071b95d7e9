/**
 * The rule text editor: CodeMirror 6 with line numbers, undo, and each lint problem shown as
 * a block under the line it points at (a decoration, so it moves with the text as the person
 * types until the next check replaces it).
 *
 * It lives in a shadow root. CodeMirror styles itself with generated CSS: in a document it
 * adds a <style> element, which the console's Content-Security-Policy (style-src 'self', no
 * inline style) refuses; in a shadow root it adopts constructed style sheets, which the policy
 * allows. Its look is therefore the theme below, not rules.css, which cannot reach inside.
 */
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { EditorState, type Extension, type Range, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration,
  type DecorationSet,
  EditorView,
  keymap,
  lineNumbers,
  WidgetType,
} from "@codemirror/view";

import type { LintProblem } from "./rules-api";

/** The part of a lint message that says what would be right, if it says. */
export function suggestion(message: string): string | null {
  const match = /did you mean ([^?]+)\?/.exec(message);
  return match?.[1]?.trim() ?? null;
}

class ProblemWidget extends WidgetType {
  constructor(
    private readonly problem: LintProblem,
    private readonly fixLabel: string,
  ) {
    super();
  }

  override eq(other: ProblemWidget): boolean {
    return other.problem.text === this.problem.text && other.fixLabel === this.fixLabel;
  }

  override toDOM(): HTMLElement {
    const box = document.createElement("div");
    box.className = "lint-problem";
    box.setAttribute("role", "alert");
    box.dataset["testid"] = "lint-problem";
    box.dataset["line"] = String(this.problem.line ?? "");
    const where = document.createElement("span");
    where.className = "lint-where";
    const column = this.problem.column === null ? "" : `:${this.problem.column}`;
    where.textContent = `${this.problem.line ?? ""}${column}${this.problem.field ? ` ${this.problem.field}` : ""}`;
    const message = document.createElement("span");
    message.className = "lint-message";
    message.textContent = this.problem.message;
    box.append(where, " ", message);
    const fix = suggestion(this.problem.message);
    if (fix !== null) {
      const hint = document.createElement("div");
      hint.className = "lint-fix";
      hint.dataset["testid"] = "lint-fix";
      const label = document.createElement("span");
      label.textContent = `${this.fixLabel} `;
      const code = document.createElement("code");
      code.textContent = fix;
      hint.append(label, code);
      box.append(hint);
    }
    return box;
  }

  override ignoreEvent(): boolean {
    return false;
  }
}

const setProblems = StateEffect.define<{ problems: LintProblem[]; fixLabel: string }>();

function decorations(state: EditorState, problems: LintProblem[], fixLabel: string): DecorationSet {
  const ranges: Range<Decoration>[] = [];
  for (const problem of problems) {
    if (problem.line === null) {
      continue; // shown above the editor: it has no line to sit under
    }
    const line = state.doc.line(Math.min(Math.max(problem.line, 1), state.doc.lines));
    ranges.push(Decoration.line({ class: "cm-lint-line" }).range(line.from));
    ranges.push(
      Decoration.widget({ widget: new ProblemWidget(problem, fixLabel), block: true, side: 1 }).range(
        line.to,
      ),
    );
  }
  return Decoration.set(ranges, true);
}

const problemField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(value, transaction) {
    let next = value.map(transaction.changes);
    for (const effect of transaction.effects) {
      if (effect.is(setProblems)) {
        next = decorations(transaction.state, effect.value.problems, effect.value.fixLabel);
      }
    }
    return next;
  },
  provide: (field) => EditorView.decorations.from(field),
});

const theme = EditorView.theme({
  "&": {
    background: "#ffffff",
    color: "#1d232b",
    border: "1px solid #d9dee4",
    borderRadius: "0.4rem",
    fontSize: "0.9rem",
  },
  "&.cm-focused": { outline: "2px solid #1f5fbf" },
  ".cm-scroller": {
    fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, "Noto Sans Mono CJK SC", monospace',
    minHeight: "12rem",
    lineHeight: "1.5",
  },
  ".cm-gutters": { background: "#f6f7f9", color: "#5b6673", borderRight: "1px solid #d9dee4" },
  ".cm-lint-line": { background: "#fdecea" },
  ".lint-problem": {
    margin: "0.15rem 0 0.3rem",
    padding: "0.3rem 0.6rem",
    borderLeft: "0.25rem solid #b3261e",
    background: "#fff5f4",
    color: "#b3261e",
    fontFamily: 'system-ui, -apple-system, "Segoe UI", "PingFang SC", "Noto Sans CJK SC", sans-serif',
    fontSize: "0.85rem",
    whiteSpace: "normal",
    overflowWrap: "anywhere",
  },
  ".lint-where": { fontWeight: "600" },
  ".lint-fix": { color: "#1d232b", marginTop: "0.15rem" },
  ".lint-fix code": { background: "#e6f4ea", padding: "0 0.25rem", borderRadius: "0.2rem" },
});

/**
 * An editor inside ``host`` (in a shadow root of its own) holding ``text``; ``onChange``
 * hears every change of the text.
 */
export function createEditor(
  host: HTMLElement,
  text: string,
  label: string,
  onChange: (text: string) => void,
): EditorView {
  const root = host.shadowRoot ?? host.attachShadow({ mode: "open" });
  root.replaceChildren();
  const parent = document.createElement("div");
  root.append(parent);
  const extensions: Extension[] = [
    theme,
    lineNumbers(),
    history(),
    keymap.of([...defaultKeymap, ...historyKeymap]),
    EditorView.lineWrapping,
    EditorState.tabSize.of(2),
    problemField,
    EditorView.contentAttributes.of({ "aria-label": label, "data-testid": "rule-text" }),
    EditorView.updateListener.of((update) => {
      if (update.docChanged) {
        onChange(update.state.doc.toString());
      }
    }),
  ];
  return new EditorView({ parent, root, state: EditorState.create({ doc: text, extensions }) });
}

/** Show ``problems`` under their lines, replacing those shown. */
export function showProblems(view: EditorView, problems: LintProblem[], fixLabel: string): void {
  view.dispatch({ effects: setProblems.of({ problems, fixLabel }) });
}

/** Replace the editor's whole text (a version restored, a rule loaded). */
export function replaceText(view: EditorView, text: string): void {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
}
