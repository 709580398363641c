/** Tiny DOM helpers shared by the views. */

/** The element with `data-testid="id"` under root (test ids double as stable hooks for the UI). */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/**
 * Build an element: `el("p", { class: "x", testid: "y", text: "hi" }, child, ...)`.
 * Keys starting with "on" add listeners; `testid` sets data-testid; other keys become attributes.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** Show or hide a node with the `hidden` attribute (CSS keeps [hidden] truly hidden). */
export function setVisible(node, visible) {
  node.hidden = !visible;
}

/** Run `fn` once, `ms` after the last call. */
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A random key for one submission; works outside secure contexts too. */
export function randomKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A short message in the corner that goes away by itself; kind is "info" or "error". */
export function showToast(text, kind = "info") {
  const box = byTestId("toasts");
  if (!box) return;
  const toast = el("div", {
    class: `toast toast-${kind}`,
    testid: "toast",
    role: kind === "error" ? "alert" : null,
    text,
  });
  box.append(toast);
  setTimeout(() => toast.classList.add("is-leaving"), 4000);
  setTimeout(() => toast.remove(), 4400);
}
