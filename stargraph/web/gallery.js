/**
 * The gallery: the user's images in pages (Relay `first`/`after`; earlier pages are reached
 * again through the cursors already seen), and the details dialog with "use these settings
 * again" and delete.
 */

import { byTestId, el, setVisible, showToast } from "./dom.js";
import { describeError, formatDate, t } from "./i18n.js";
import { DELETE_IMAGE, GALLERY } from "./queries.js";

const PAGE_SIZE = 12;

export function createGallery({ root, dialog, api, onReuse, onDeleted }) {
  const grid = byTestId("gallery-grid", root);
  const cursors = [null]; // cursors[n] = the `after` that loads page n
  let page = 0;
  let items = [];
  let hasNext = false;
  let open = null; // { image, job } shown in the dialog

  async function load() {
    try {
      const { gallery } = await api(GALLERY, { first: PAGE_SIZE, after: cursors[page] });
      items = gallery.edges.map((edge) => edge.node);
      hasNext = gallery.pageInfo.hasNextPage;
      cursors[page + 1] = gallery.pageInfo.endCursor;
    } catch (error) {
      showToast(describeError(error), "error");
      return;
    }
    if (!items.length && page > 0) {
      page -= 1; // the last page emptied (e.g. after a delete): show the one before
      return load();
    }
    render();
  }

  function render() {
    grid.replaceChildren(...items.map(thumbnail));
    setVisible(byTestId("gallery-empty", root), items.length === 0);
    byTestId("gallery-prev", root).disabled = page === 0;
    byTestId("gallery-next", root).disabled = !hasNext;
    byTestId("gallery-page", root).textContent = t("gallery.page", { n: page + 1 });
    setVisible(byTestId("gallery-pager", root), page > 0 || hasNext);
    if (open) fillDialog(open.image, open.job);
  }

  function thumbnail(image) {
    const label = t("gallery.open", { prompt: image.job.prompt });
    return el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: "thumb",
          testid: "gallery-item",
          "data-image-id": image.id,
          "aria-label": label,
          title: image.job.prompt,
        },
        el("img", {
          src: image.url,
          alt: "",
          loading: "lazy",
          width: image.width,
          height: image.height,
        }),
      ),
    );
  }

  function fillDialog(image, job) {
    const text = (id, value) => {
      byTestId(id, dialog).textContent = value ?? "—";
    };
    const img = byTestId("detail-image", dialog);
    img.src = image.url;
    img.alt = job.prompt;
    text("detail-prompt", job.prompt);
    text(
      "detail-translated-prompt",
      job.translation === "PASSTHROUGH"
        ? t("detail.passthrough")
        : job.translatedPrompt || t("detail.notTranslated"),
    );
    text("detail-negative-prompt", job.negativePrompt || "—");
    text("detail-seed", String(image.seed));
    text("detail-size", `${image.width}×${image.height}`);
    text("detail-steps", job.steps);
    text("detail-cfg", job.cfg);
    text("detail-sampler", job.sampler ? `${job.sampler} / ${job.scheduler}` : null);
    text("detail-model", job.model);
    text("detail-workflow", job.workflow);
    text("detail-priority", job.priority ? t(`priority.${job.priority}`) : null);
    text("detail-created", formatDate(image.createdAt));
    const download = byTestId("detail-download", dialog);
    download.href = image.url;
    download.download = `stargraph-${image.id}.png`;
    resetDelete();
  }

  function resetDelete() {
    const button = byTestId("detail-delete", dialog);
    delete button.dataset.confirm;
    button.textContent = t("detail.delete");
  }

  async function onDelete() {
    const button = byTestId("detail-delete", dialog);
    if (!button.dataset.confirm) {
      button.dataset.confirm = "1"; // a second click deletes: no blocking confirm() box
      button.textContent = t("detail.confirmDelete");
      return;
    }
    const { image } = open;
    button.disabled = true;
    try {
      await api(DELETE_IMAGE, { id: image.id });
      dialog.close();
      showToast(t("detail.deleted"));
      onDeleted(image.id);
      await load();
    } catch (error) {
      showToast(describeError(error), "error");
    } finally {
      button.disabled = false;
    }
  }

  function openDetail(image, job) {
    if (!image || !job) return;
    open = { image, job };
    fillDialog(image, job);
    if (!dialog.open) dialog.showModal();
  }

  grid.addEventListener("click", (event) => {
    const button = event.target.closest("[data-image-id]");
    const image = button && items.find((item) => item.id === button.dataset.imageId);
    if (image) openDetail(image, image.job);
  });
  byTestId("gallery-next", root).addEventListener("click", () => {
    page += 1;
    load();
  });
  byTestId("gallery-prev", root).addEventListener("click", () => {
    page = Math.max(0, page - 1);
    load();
  });
  byTestId("gallery-refresh", root).addEventListener("click", () => load());
  byTestId("detail-close", dialog).addEventListener("click", () => dialog.close());
  byTestId("detail-delete", dialog).addEventListener("click", onDelete);
  byTestId("detail-reuse", dialog).addEventListener("click", () => {
    const { image, job } = open;
    dialog.close();
    onReuse({ ...job, seed: image.seed });
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", () => {
    open = null;
  });

  return {
    load,
    render,
    openDetail,
    /** New images arrived: show them if the first page is in view. */
    refreshIfFirstPage() {
      if (page === 0) load();
    },
    clear() {
      page = 0;
      cursors.length = 1;
      items = [];
      hasNext = false;
      if (dialog.open) dialog.close();
      grid.replaceChildren();
    },
  };
}
