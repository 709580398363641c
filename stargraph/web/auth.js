/** Sign in / sign up, and where the bearer token lives between visits. */

import { byTestId, setVisible } from "./dom.js";
import { has, t } from "./i18n.js";
import { LOGIN, REGISTER } from "./queries.js";

const TOKEN_KEY = "stargraph.token";

export const tokenStore = {
  get: () => localStorage.getItem(TOKEN_KEY),
  set: (token) => localStorage.setItem(TOKEN_KEY, token),
  clear: () => localStorage.removeItem(TOKEN_KEY),
};

/** The sign-in view; `onSignedIn(user)` runs once a token is stored. */
export function createAuthView({ root, api, onSignedIn }) {
  const form = byTestId("auth-form", root);
  const errorBox = byTestId("auth-error", root);
  const submit = byTestId("auth-submit", root);
  let mode = "signin";

  function setMode(next) {
    mode = next;
    for (const tab of root.querySelectorAll("[role=tab]")) {
      tab.setAttribute("aria-selected", String(tab.dataset.mode === mode));
    }
    form.password.autocomplete = mode === "signup" ? "new-password" : "current-password";
    setVisible(byTestId("auth-bonus", root), mode === "signup");
    render();
  }

  function render() {
    submit.textContent = t(`auth.submit.${mode}`);
  }

  function showError(text) {
    errorBox.textContent = text ?? "";
    setVisible(errorBox, Boolean(text));
  }

  async function onSubmit(event) {
    event.preventDefault();
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) return showError(t("auth.required"));
    showError(null);
    submit.disabled = true;
    try {
      const data = await api(mode === "signup" ? REGISTER : LOGIN, { username, password });
      const payload = data.register ?? data.login;
      tokenStore.set(payload.token);
      form.reset();
      onSignedIn(payload.user);
    } catch (error) {
      showError(describe(error));
    } finally {
      submit.disabled = false;
    }
  }

  root.querySelector("[role=tablist]").addEventListener("click", (event) => {
    const tab = event.target.closest("[role=tab]");
    if (tab) setMode(tab.dataset.mode);
  });
  form.addEventListener("submit", onSubmit);

  return {
    show(message) {
      setVisible(root, true);
      showError(message);
      render();
      form.username.focus();
    },
    hide: () => setVisible(root, false),
    render,
  };
}

function describe(error) {
  if (has(`auth.${error.code}`)) return t(`auth.${error.code}`);
  if (error.code === "BAD_USER_INPUT" || !has(`error.${error.code}`)) return error.message;
  return t(`error.${error.code}`);
}
