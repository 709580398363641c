/**
 * The prompt form: every Text2ImageInput parameter with its default, size presets, the cost
 * before sending, errors next to the field they concern, and one idempotency key per intended
 * submission (kept across retries and double clicks until the form changes or a job comes back).
 */

import { byTestId, el, randomKey, setVisible } from "./dom.js";
import { formatNumber, has, t } from "./i18n.js";
import { SUBMIT } from "./queries.js";

const FIELDS = [
  "prompt",
  "negativePrompt",
  "count",
  "width",
  "height",
  "steps",
  "cfg",
  "sampler",
  "scheduler",
  "model",
  "seed",
  "workflow",
  "priority",
];

const isInt = (v) => Number.isInteger(v);
const inRange = (v, lo, hi) => Number.isFinite(v) && v >= lo && v <= hi;
const dimension = (v) => isInt(v) && inRange(v, 64, 2048) && v % 8 === 0;

/** The bands a role may submit in (DESIGN.md: users LOW/NORMAL, admins all). */
const PRIORITIES = { user: ["NORMAL", "LOW"], admin: ["NORMAL", "LOW", "HIGH", "URGENT"] };

/** Client-side checks mirroring the server's limits (DESIGN.md); the server stays the judge. */
const RULES = {
  prompt: (v) => v.length >= 1 && v.length <= 2000,
  negativePrompt: (v) => v.length <= 2000,
  count: (v) => isInt(v) && inRange(v, 1, 8),
  width: dimension,
  height: dimension,
  steps: (v) => isInt(v) && inRange(v, 1, 100),
  cfg: (v) => inRange(v, 0, 30),
  seed: (v) => v === null || (isInt(v) && inRange(v, 0, Number.MAX_SAFE_INTEGER)),
  sampler: (v) => v !== "",
  scheduler: (v) => v !== "",
  workflow: (v) => v !== "",
  priority: (v) => PRIORITIES.admin.includes(v),
};


const toNumber = (text) => (text.trim() === "" ? Number.NaN : Number(text));

export function createComposeForm({ form, api, onSubmitted, getAvailable }) {
  const submitButton = byTestId("submit-button", form);
  const formError = byTestId("form-error", form);
  let price = 0;
  let pendingKey = null;
  let sending = false;

  function readInput() {
    const number = (name) => toNumber(form.elements[name].value);
    return {
      prompt: form.prompt.value.trim(),
      negativePrompt: form.negativePrompt.value.trim(),
      count: number("count"),
      width: number("width"),
      height: number("height"),
      steps: number("steps"),
      cfg: number("cfg"),
      sampler: form.sampler.value,
      scheduler: form.scheduler.value,
      model: form.model.value || null,
      seed: form.seedRandom.checked ? null : number("seed"),
      workflow: form.workflow.value,
      priority: form.priority.value,
    };
  }

  function showFieldError(field, text, detail = "") {
    const box = byTestId(`error-${field}`, form);
    const input = form.elements[field];
    if (!box) return false;
    box.textContent = text ?? "";
    if (detail && detail !== text) box.append(el("small", { text: detail }));
    setVisible(box, Boolean(text));
    if (input?.setAttribute) input.setAttribute("aria-invalid", String(Boolean(text)));
    return true;
  }

  function showFormError(text) {
    formError.textContent = text ?? "";
    setVisible(formError, Boolean(text));
  }

  function validate(input) {
    const problems = FIELDS.filter((field) => RULES[field] && !RULES[field](input[field]));
    for (const field of FIELDS) {
      showFieldError(field, problems.includes(field) ? t(`invalid.${field}`) : null);
    }
    return problems;
  }

  function focusField(field) {
    const input = form.elements[field];
    if (!input?.focus) return;
    const details = input.closest("details");
    if (details) details.open = true;
    input.focus();
  }

  function showServerError(error) {
    const shown = error.fieldErrors.filter(({ field, message }) =>
      showFieldError(field, has(`invalid.${field}`) ? t(`invalid.${field}`) : message, message),
    );
    if (shown.length) focusField(shown[0].field);
    const key = `error.${error.code}`;
    showFormError(has(key) ? t(key) : t("error.generic", { message: error.message }));
  }

  function setSending(value) {
    sending = value;
    submitButton.disabled = value;
    submitButton.setAttribute("aria-busy", String(value));
    submitButton.querySelector(".btn-label").textContent = t(value ? "submitting" : "submit");
  }

  async function onSubmit(event) {
    event.preventDefault();
    if (sending) return; // a double click sends once; the key guards retries after that
    showFormError(null);
    const input = readInput();
    const problems = validate(input);
    if (problems.length) return focusField(problems[0]);
    pendingKey ??= randomKey();
    setSending(true);
    try {
      const data = await api(SUBMIT, { input: { ...input, idempotencyKey: pendingKey } });
      pendingKey = null;
      onSubmitted(data.submitText2Image);
    } catch (error) {
      showServerError(error);
    } finally {
      setSending(false);
    }
  }

  function updateCost() {
    const count = toNumber(form.count.value);
    const valid = RULES.count(count);
    const cost = valid ? count * price : null;
    const available = getAvailable();
    const costBox = byTestId("cost", form);
    byTestId("cost-value", form).textContent = valid
      ? t("cost.value", { cost: formatNumber(cost) })
      : "—";
    byTestId("cost-detail", form).textContent = valid ? t("cost.detail", { count, price }) : "";
    costBox.dataset.cost = valid ? String(cost) : "";
    const short = valid && available !== null && cost > available;
    costBox.classList.toggle("is-short", short);
    const left = valid && available !== null ? available - cost : null;
    byTestId("cost-after", form).textContent =
      left === null ? "" : short ? t("cost.short") : t("cost.after", { left: formatNumber(left) });
    byTestId("prompt-count", form).textContent = t("chars", { n: form.prompt.value.length });
  }

  const syncPreset = wireSize(form);
  wireSeed(form);
  form.addEventListener("submit", onSubmit);
  form.addEventListener("input", (event) => {
    pendingKey = null; // a changed form is a new intent: it gets a new key
    const field = event.target.name === "seedRandom" ? "seed" : event.target.name;
    if (FIELDS.includes(field)) showFieldError(field, null);
    updateCost();
  });

  return {
    setOptions(options) {
      price = options.pricePerImage;
      fillOptions(form, options);
      fillPriorities(form, options.me?.role === "ADMIN");
      updateCost();
    },
    /** Fill the form from a job's settings ("use these settings again"). */
    applySettings(job) {
      applySettings(form, job);
      syncPreset();
      pendingKey = null;
      updateCost();
      form.scrollIntoView({ behavior: "smooth", block: "start" });
      form.prompt.focus({ preventScroll: true });
    },
    updateCost,
    render() {
      setSending(sending);
      updateCost();
      const model = form.model.querySelector('option[value=""]');
      if (model) model.textContent = t("model.default");
      for (const option of form.priority.options) option.textContent = priorityLabel(option.value);
    },
  };
}

function fillSelect(select, options, preferred) {
  const previous = select.value;
  select.replaceChildren(
    ...options.map(({ value, label, title }) => el("option", { value, title, text: label })),
  );
  const values = options.map((o) => o.value);
  select.value = [previous, preferred].find((v) => values.includes(v)) ?? values[0] ?? "";
}

function fillOptions(form, { models, samplers, schedulers, workflows }) {
  const plain = (values) => values.map((value) => ({ value, label: value }));
  fillSelect(form.sampler, plain(samplers), "euler");
  fillSelect(form.scheduler, plain(schedulers), "normal");
  fillSelect(form.model, [{ value: "", label: t("model.default") }, ...plain(models)], "");
  const flows = workflows.map((w) => ({
    value: w.name,
    label: w.description ? `${w.name} — ${w.description}` : w.name,
    title: w.description,
  }));
  fillSelect(form.workflow, flows, "t2i");
}

const priorityLabel = (value) => t(`priority.${value}`);

function fillPriorities(form, admin) {
  const values = PRIORITIES[admin ? "admin" : "user"];
  fillSelect(
    form.priority,
    values.map((value) => ({ value, label: priorityLabel(value) })),
    "NORMAL",
  );
}

/** Presets and the width/height fields stay in step; the swap button turns the picture.
 * Returns the function that selects the preset matching the current width and height. */
function wireSize(form) {
  const syncPreset = () => {
    const value = `${form.width.value}x${form.height.value}`;
    const preset = [...form.elements.size].find((radio) => radio.value === value);
    (preset ?? form.querySelector('input[name=size][value="custom"]')).checked = true;
  };
  for (const radio of form.elements.size) {
    radio.addEventListener("change", () => {
      if (radio.value === "custom") return form.width.focus();
      [form.width.value, form.height.value] = radio.value.split("x");
    });
  }
  form.width.addEventListener("input", syncPreset);
  form.height.addEventListener("input", syncPreset);
  byTestId("size-swap", form).addEventListener("click", () => {
    [form.width.value, form.height.value] = [form.height.value, form.width.value];
    syncPreset();
    form.width.dispatchEvent(new Event("input", { bubbles: true }));
  });
  return syncPreset;
}

function wireSeed(form) {
  form.seedRandom.addEventListener("change", () => {
    form.seed.disabled = form.seedRandom.checked;
    if (!form.seedRandom.checked && form.seed.value === "") {
      form.seed.value = String(Math.floor(Math.random() * 2 ** 32));
    }
  });
}

function applySettings(form, job) {
  form.prompt.value = job.prompt;
  form.negativePrompt.value = job.negativePrompt ?? "";
  for (const name of ["count", "width", "height", "steps", "cfg"]) {
    form.elements[name].value = job[name];
  }
  const offers = (select, value) => [...select.options].some((o) => o.value === value);
  for (const name of ["sampler", "scheduler", "workflow", "priority"]) {
    if (offers(form.elements[name], job[name])) form.elements[name].value = job[name];
  }
  form.model.value = offers(form.model, job.model) ? job.model : "";
  form.seedRandom.checked = false;
  form.seed.disabled = false;
  form.seed.value = String(job.seed);
}
