// Tiny DOM helpers. Text always goes in through text nodes / textContent: nothing from the
// server (names, chat, scenarios, reasons) is ever parsed as HTML.

export type Child = Node | string | number | null | undefined | false;
type Props = Record<string, unknown>;

const PROPERTIES = new Set(["value", "checked", "disabled", "muted", "autoplay", "playsInline",
  "selected", "hidden", "type", "min", "max", "step"]);

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, props: Props = {}, ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else if (key === "class") {
      el.className = String(value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (PROPERTIES.has(key)) {
      (el as unknown as Record<string, unknown>)[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
}

export function clear(el: Node): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** Keep one child per key (created once, updated every call): focus and typing survive. */
export function syncList<T>(
  container: HTMLElement, items: T[], key: (item: T) => string,
  create: (item: T) => HTMLElement, update: (el: HTMLElement, item: T) => void,
): void {
  const existing = new Map<string, HTMLElement>();
  for (const child of Array.from(container.children) as HTMLElement[]) {
    if (child.dataset.key !== undefined) existing.set(child.dataset.key, child);
  }
  const wanted = new Set<string>();
  let previous: Element | null = null;
  for (const item of items) {
    const k = key(item);
    wanted.add(k);
    let el = existing.get(k);
    if (!el) {
      el = create(item);
      el.dataset.key = k;
    }
    update(el, item);
    const next: Element | null = previous ? previous.nextElementSibling : container.firstElementChild;
    if (next !== el) container.insertBefore(el, next);
    previous = el;
  }
  for (const [k, el] of existing) if (!wanted.has(k)) el.remove();
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  const rest = s % 60;
  return m >= 60
    ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(rest).padStart(2, "0")}`
    : `${m}:${String(rest).padStart(2, "0")}`;
}
