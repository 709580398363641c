/** One job's card: status, queue position and ETA, step progress, live preview, results, money. */

import { el, setVisible } from "./dom.js";
import { formatDuration, formatNumber, t } from "./i18n.js";
import { isTerminal, queuedEta, refund, runningEta } from "./jobstate.js";

/** Build the card's elements once; `render` fills them from the job each time it changes. */
export function createJobCard(job, { onCancel, onDismiss, onOpenImage }) {
  const parts = {
    status: el("span", { class: "badge", testid: "job-status" }),
    prompt: el("p", { class: "job-prompt", testid: "job-prompt" }),
    cancel: el("button", {
      type: "button",
      class: "btn btn-ghost btn-small",
      testid: "job-cancel",
    }),
    dismiss: el("button", {
      type: "button",
      class: "btn btn-icon btn-small",
      testid: "job-dismiss",
      text: "✕",
    }),
    meta: el("p", { class: "job-meta muted", testid: "job-meta" }),
    position: el("span", { class: "job-position", testid: "job-position" }),
    eta: el("span", { class: "job-eta muted", testid: "job-eta" }),
    bar: el("div", { class: "progress-bar" }),
    stepLabel: el("span", { class: "job-step", testid: "job-step-label" }),
    preview: el("img", { class: "job-preview", testid: "job-preview", alt: "" }),
    images: el("div", { class: "job-images", testid: "job-images" }),
    charged: el("span", { class: "job-charged", testid: "job-charged" }),
    refund: el("span", { class: "job-refund", testid: "job-refund" }),
    error: el("p", { class: "job-error", testid: "job-error", role: "alert" }),
  };
  parts.money = el("p", { class: "job-money" }, parts.charged, parts.refund);
  parts.progress = el(
    "div",
    { class: "progress", role: "progressbar", testid: "job-progress", "aria-valuemin": 0 },
    parts.bar,
  );
  parts.queueRow = el("div", { class: "job-row job-queue" }, parts.position, parts.eta);
  parts.progressRow = el(
    "div",
    { class: "job-run" },
    parts.progress,
    el("div", { class: "job-row" }, parts.stepLabel),
  );
  const root = el(
    "li",
    { class: "job-card", testid: "job-card", "data-job-id": job.id },
    el("div", { class: "job-head" }, parts.status, parts.prompt, parts.cancel, parts.dismiss),
    parts.meta,
    parts.queueRow,
    parts.progressRow,
    parts.preview,
    parts.images,
    parts.money,
    parts.error,
  );
  parts.cancel.addEventListener("click", () => onCancel(job.id));
  parts.dismiss.addEventListener("click", () => onDismiss(job.id));
  parts.images.addEventListener("click", (event) => {
    const button = event.target.closest("[data-image-id]");
    if (button) onOpenImage(button.dataset.imageId);
  });
  return { root, parts };
}

/** Fill the card from the job and the latest queue figures. */
export function renderJobCard({ root, parts }, job, queue, now = Date.now()) {
  const status = job.status;
  root.dataset.status = status;
  parts.status.textContent = t(`status.${status}`);
  parts.status.className = `badge badge-${status.toLowerCase()}`;
  parts.prompt.textContent = job.prompt ?? "";
  parts.prompt.title = job.prompt ?? "";
  parts.meta.textContent = job.width ? t("job.meta", job) : "";
  renderQueue(parts, job, queue);
  renderProgress(parts, job, now);
  // a cancelled or failed job's last preview is no result: it goes with the run
  setVisible(parts.preview, Boolean(job.preview) && !job.images.length && !isTerminal(status));
  if (job.preview && parts.preview.getAttribute("src") !== job.preview)
    parts.preview.src = job.preview;
  parts.preview.alt = t("job.preview");
  renderImages(parts, job);
  renderMoney(parts, job);
  parts.error.textContent = job.error ? job.error.message || job.error.code : "";
  setVisible(parts.error, Boolean(job.error));
  setVisible(parts.cancel, !isTerminal(status));
  parts.cancel.disabled = Boolean(job.cancelling);
  parts.cancel.textContent = t(job.cancelling ? "job.cancelling" : "job.cancel");
  setVisible(parts.dismiss, isTerminal(status));
  parts.dismiss.setAttribute("aria-label", t("job.dismiss"));
  parts.dismiss.title = t("job.dismiss");
}

function renderQueue(parts, job, queue) {
  const waiting = job.status === "QUEUED" && job.position != null;
  setVisible(parts.queueRow, waiting);
  parts.position.dataset.position = waiting ? String(job.position) : "";
  if (!waiting) return;
  parts.position.textContent = t("job.position", { position: formatNumber(job.position) });
  const eta = queuedEta(job, queue);
  parts.eta.textContent = eta === null ? "" : t("job.eta", { time: formatDuration(eta) });
}

function renderProgress(parts, job, now) {
  const running = job.status === "DISPATCHED" || job.status === "RUNNING";
  const { progress } = job;
  setVisible(parts.progressRow, running || (Boolean(progress) && !isTerminal(job.status)));
  parts.progress.classList.toggle("is-indeterminate", !progress);
  if (!progress) {
    parts.stepLabel.textContent = t(`status.${job.status}`);
    return;
  }
  const fraction = progress.maxSteps ? progress.step / progress.maxSteps : 0;
  parts.bar.style.width = `${Math.round(fraction * 1000) / 10}%`;
  parts.progress.setAttribute("aria-valuemax", progress.maxSteps);
  parts.progress.setAttribute("aria-valuenow", progress.step);
  parts.progress.dataset.step = progress.step;
  parts.progress.dataset.maxSteps = progress.maxSteps;
  const label = t("job.step", { step: progress.step, max: progress.maxSteps });
  parts.progress.setAttribute("aria-valuetext", label);
  const left = runningEta(job, now);
  parts.stepLabel.textContent =
    left === null ? label : `${label} · ${t("job.left", { time: formatDuration(left) })}`;
}

function renderImages(parts, job) {
  const key = job.images.map((image) => image.id).join(",");
  if (parts.images.dataset.key === key) return;
  parts.images.dataset.key = key;
  parts.images.replaceChildren(
    ...job.images.map((image, index) =>
      el(
        "button",
        {
          type: "button",
          class: "thumb",
          "data-image-id": image.id,
          "aria-label": t("job.result", { n: index + 1, prompt: job.prompt ?? "" }),
        },
        el("img", {
          src: image.url,
          alt: "",
          testid: "job-image",
          width: image.width,
          height: image.height,
        }),
      ),
    ),
  );
}

function renderMoney(parts, job) {
  const back = refund(job);
  const charged = job.status === "SUCCEEDED" && job.charged != null;
  const refunded = job.status === "SUCCEEDED" ? charged && back > 0 : back !== null;
  parts.charged.textContent = charged
    ? t("job.charged", { amount: formatNumber(job.charged) })
    : "";
  parts.charged.dataset.amount = charged ? String(job.charged) : "";
  parts.refund.textContent = refunded ? t("job.refund", { amount: formatNumber(back) }) : "";
  parts.refund.dataset.amount = refunded ? String(back) : "";
  setVisible(parts.charged, charged);
  setVisible(parts.refund, refunded);
  setVisible(parts.money, charged || refunded);
}
