/**
 * Chinese and English strings. The browser's language decides at first visit; a choice made
 * in the language menu is remembered in localStorage. Static markup names its string with
 * data-i18n (text), data-i18n-placeholder, data-i18n-aria-label or data-i18n-title.
 */

const EN = {
  "app.tagline": "Text to image, live",
  skip: "Skip to content",
  "lang.label": "Language",
  "balance.label": "Points",
  "balance.available": "Available",
  "balance.frozen": "Frozen",
  "conn.idle": "Offline",
  "conn.connecting": "Connecting…",
  "conn.open": "Live",
  "conn.reconnecting": "Reconnecting…",
  "conn.closed": "Disconnected",
  "toast.reconnected": "Connection restored — caught up on what was missed.",
  "auth.title": "Welcome to StarGraph",
  "auth.subtitle": "Turn words — Chinese or English — into images.",
  "auth.signin": "Sign in",
  "auth.signup": "Sign up",
  "auth.username": "Username",
  "auth.password": "Password",
  "auth.submit.signin": "Sign in",
  "auth.submit.signup": "Create account",
  "auth.bonus": "New accounts start with free points.",
  "auth.logout": "Sign out",
  "auth.expired": "Your session has ended. Please sign in again.",
  "auth.required": "Enter a username and a password.",
  "auth.CONFLICT": "That username is taken.",
  "auth.UNAUTHENTICATED": "Wrong username or password.",
  "compose.title": "Create",
  prompt: "Prompt",
  "prompt.placeholder": "A quiet lake at dawn, mist, watercolor… (Chinese or English)",
  negativePrompt: "Negative prompt",
  "negativePrompt.placeholder": "What to avoid: blurry, text, watermark",
  size: "Size",
  "size.custom": "Custom",
  width: "Width",
  height: "Height",
  "size.swap": "Swap width and height",
  count: "Images",
  seed: "Seed",
  "seed.random": "Random",
  "seed.placeholder": "random",
  advanced: "Advanced settings",
  steps: "Steps",
  cfg: "CFG scale",
  sampler: "Sampler",
  scheduler: "Scheduler",
  model: "Model",
  "model.default": "Server default",
  workflow: "Workflow",
  priority: "Priority",
  "priority.NORMAL": "Normal",
  "priority.LOW": "Low — can wait",
  "priority.HIGH": "High",
  "priority.URGENT": "Urgent",
  cost: "Cost",
  "cost.value": "{cost} points",
  "cost.detail": "{count} × {price} points",
  "cost.after": "{left} left after this",
  "cost.short": "Not enough points",
  submit: "Generate",
  submitting: "Sending…",
  chars: "{n} / 2000",
  "invalid.prompt": "Enter a prompt of 1 to 2000 characters.",
  "invalid.negativePrompt": "At most 2000 characters.",
  "invalid.width": "Width: 64 to 2048, a multiple of 8.",
  "invalid.height": "Height: 64 to 2048, a multiple of 8.",
  "invalid.count": "1 to 8 images.",
  "invalid.steps": "1 to 100 steps.",
  "invalid.cfg": "A number from 0 to 30.",
  "invalid.seed": "A whole number from 0 to 9007199254740991.",
  "invalid.sampler": "Choose a sampler the servers offer.",
  "invalid.scheduler": "Choose a scheduler the servers offer.",
  "invalid.model": "Choose an available model.",
  "invalid.workflow": "Choose a workflow.",
  "invalid.priority": "Choose a priority.",
  "error.BAD_USER_INPUT": "Please check the highlighted fields.",
  "error.INSUFFICIENT_POINTS": "Not enough points for this request.",
  "error.RATE_LIMITED": "Too many requests — wait a moment and try again.",
  "error.QUEUE_FULL": "The queue is full right now. Try again soon.",
  "error.TRANSLATION_UNAVAILABLE":
    "The prompt could not be translated right now. Try again, or write it in English.",
  "error.UNAUTHENTICATED": "Please sign in.",
  "error.FORBIDDEN": "You are not allowed to do that.",
  "error.NOT_FOUND": "Not found — it may have been deleted.",
  "error.CONFLICT": "That changed in the meantime. Please try again.",
  "error.NETWORK": "Cannot reach the server. Check your connection.",
  "error.generic": "Something went wrong: {message}",
  "jobs.title": "Jobs",
  "jobs.empty": "Nothing running. Your generations appear here, live.",
  "queue.summary": "{length} waiting · {running} running · {backends} GPU",
  "status.QUEUED": "Queued",
  "status.DISPATCHED": "Starting",
  "status.RUNNING": "Generating",
  "status.SUCCEEDED": "Done",
  "status.FAILED": "Failed",
  "status.CANCELLED": "Cancelled",
  "job.position": "Position {position} in the queue",
  "job.eta": "about {time}",
  "job.step": "Step {step} of {max}",
  "job.left": "{time} left",
  "job.meta": "{count} × {width}×{height} · {steps} steps",
  "job.cancel": "Cancel",
  "job.cancelling": "Cancelling…",
  "job.refund": "{amount} points refunded",
  "job.charged": "{amount} points charged",
  "job.dismiss": "Remove from list",
  "job.preview": "Live preview",
  "job.result": "Result {n}: {prompt}",
  "time.seconds": "{s} s",
  "time.minutes": "{m} min {s} s",
  "gallery.title": "Gallery",
  "gallery.empty": "No images yet. Generate your first one!",
  "gallery.prev": "Newer",
  "gallery.next": "Older",
  "gallery.page": "Page {n}",
  "gallery.refresh": "Refresh",
  "gallery.open": "Open details: {prompt}",
  "detail.title": "Image details",
  "detail.prompt": "Prompt",
  "detail.translated": "Translated prompt",
  "detail.notTranslated": "(not translated)",
  "detail.passthrough": "(translation unavailable: sent as written)",
  "detail.workflow": "Workflow",
  "detail.negative": "Negative prompt",
  "detail.seed": "Seed",
  "detail.size": "Size",
  "detail.steps": "Steps",
  "detail.cfg": "CFG",
  "detail.sampler": "Sampler / scheduler",
  "detail.model": "Model",
  "detail.priority": "Priority",
  "detail.created": "Created",
  "detail.reuse": "Use these settings again",
  "detail.reused": "Settings copied into the form.",
  "detail.download": "Download",
  "detail.delete": "Delete",
  "detail.confirmDelete": "Delete for good?",
  "detail.deleted": "Image deleted.",
  "detail.close": "Close",
};

const ZH = {
  "app.tagline": "文字生成图像，实时呈现",
  skip: "跳到主要内容",
  "lang.label": "语言",
  "balance.label": "点数",
  "balance.available": "可用",
  "balance.frozen": "冻结",
  "conn.idle": "离线",
  "conn.connecting": "连接中…",
  "conn.open": "实时",
  "conn.reconnecting": "重新连接中…",
  "conn.closed": "已断开",
  "toast.reconnected": "连接已恢复，错过的更新已补齐。",
  "auth.title": "欢迎使用 StarGraph",
  "auth.subtitle": "用中文或英文描述，把文字变成图像。",
  "auth.signin": "登录",
  "auth.signup": "注册",
  "auth.username": "用户名",
  "auth.password": "密码",
  "auth.submit.signin": "登录",
  "auth.submit.signup": "创建账户",
  "auth.bonus": "新账户赠送体验点数。",
  "auth.logout": "退出登录",
  "auth.expired": "会话已结束，请重新登录。",
  "auth.required": "请输入用户名和密码。",
  "auth.CONFLICT": "该用户名已被使用。",
  "auth.UNAUTHENTICATED": "用户名或密码错误。",
  "compose.title": "创作",
  prompt: "提示词",
  "prompt.placeholder": "例如：黎明时分宁静的湖面，薄雾，水彩风格……（中英文皆可）",
  negativePrompt: "反向提示词",
  "negativePrompt.placeholder": "不希望出现的内容：模糊、文字、水印",
  size: "尺寸",
  "size.custom": "自定义",
  width: "宽",
  height: "高",
  "size.swap": "交换宽高",
  count: "张数",
  seed: "种子",
  "seed.random": "随机",
  "seed.placeholder": "随机",
  advanced: "高级设置",
  steps: "步数",
  cfg: "提示词相关性 (CFG)",
  sampler: "采样器",
  scheduler: "调度器",
  model: "模型",
  "model.default": "服务器默认",
  workflow: "工作流",
  priority: "优先级",
  "priority.NORMAL": "普通",
  "priority.LOW": "低（可以等）",
  "priority.HIGH": "高",
  "priority.URGENT": "紧急",
  cost: "费用",
  "cost.value": "{cost} 点",
  "cost.detail": "{count} × {price} 点",
  "cost.after": "提交后剩余 {left} 点",
  "cost.short": "点数不足",
  submit: "生成",
  submitting: "提交中…",
  chars: "{n} / 2000",
  "invalid.prompt": "请输入 1 到 2000 个字符的提示词。",
  "invalid.negativePrompt": "最多 2000 个字符。",
  "invalid.width": "宽度：64 到 2048，且为 8 的倍数。",
  "invalid.height": "高度：64 到 2048，且为 8 的倍数。",
  "invalid.count": "1 到 8 张。",
  "invalid.steps": "1 到 100 步。",
  "invalid.cfg": "0 到 30 之间的数。",
  "invalid.seed": "0 到 9007199254740991 之间的整数。",
  "invalid.sampler": "请选择服务器提供的采样器。",
  "invalid.scheduler": "请选择服务器提供的调度器。",
  "invalid.model": "请选择可用的模型。",
  "invalid.workflow": "请选择工作流。",
  "invalid.priority": "请选择优先级。",
  "error.BAD_USER_INPUT": "请检查标出的字段。",
  "error.INSUFFICIENT_POINTS": "点数不足。",
  "error.RATE_LIMITED": "请求过于频繁，请稍后再试。",
  "error.QUEUE_FULL": "队列已满，请稍后再试。",
  "error.TRANSLATION_UNAVAILABLE": "暂时无法翻译提示词。请重试，或改用英文。",
  "error.UNAUTHENTICATED": "请先登录。",
  "error.FORBIDDEN": "无权执行此操作。",
  "error.NOT_FOUND": "未找到，可能已被删除。",
  "error.CONFLICT": "状态已变化，请重试。",
  "error.NETWORK": "无法连接服务器，请检查网络。",
  "error.generic": "出错了：{message}",
  "jobs.title": "任务",
  "jobs.empty": "暂无任务。生成过程会在这里实时显示。",
  "queue.summary": "排队 {length} · 运行 {running} · GPU {backends} 台",
  "status.QUEUED": "排队中",
  "status.DISPATCHED": "即将开始",
  "status.RUNNING": "生成中",
  "status.SUCCEEDED": "完成",
  "status.FAILED": "失败",
  "status.CANCELLED": "已取消",
  "job.position": "队列第 {position} 位",
  "job.eta": "约 {time}",
  "job.step": "第 {step} / {max} 步",
  "job.left": "剩余 {time}",
  "job.meta": "{count} 张 · {width}×{height} · {steps} 步",
  "job.cancel": "取消",
  "job.cancelling": "取消中…",
  "job.refund": "已退还 {amount} 点",
  "job.charged": "已扣除 {amount} 点",
  "job.dismiss": "从列表移除",
  "job.preview": "实时预览",
  "job.result": "结果 {n}：{prompt}",
  "time.seconds": "{s} 秒",
  "time.minutes": "{m} 分 {s} 秒",
  "gallery.title": "作品集",
  "gallery.empty": "还没有图片，来生成第一张吧！",
  "gallery.prev": "较新",
  "gallery.next": "较早",
  "gallery.page": "第 {n} 页",
  "gallery.refresh": "刷新",
  "gallery.open": "查看详情：{prompt}",
  "detail.title": "图片详情",
  "detail.prompt": "提示词",
  "detail.translated": "翻译后的提示词",
  "detail.notTranslated": "（未翻译）",
  "detail.passthrough": "（翻译不可用：按原文发送）",
  "detail.workflow": "工作流",
  "detail.negative": "反向提示词",
  "detail.seed": "种子",
  "detail.size": "尺寸",
  "detail.steps": "步数",
  "detail.cfg": "CFG",
  "detail.sampler": "采样器 / 调度器",
  "detail.model": "模型",
  "detail.priority": "优先级",
  "detail.created": "创建时间",
  "detail.reuse": "使用相同设置再来一次",
  "detail.reused": "设置已填入表单。",
  "detail.download": "下载",
  "detail.delete": "删除",
  "detail.confirmDelete": "确定永久删除？",
  "detail.deleted": "图片已删除。",
  "detail.close": "关闭",
};

const STRINGS = { en: EN, zh: ZH };
const STORAGE_KEY = "stargraph.lang";
const listeners = new Set();

/** "zh" or "en": a stored choice wins, else the first browser language we speak. */
export function detectLanguage(stored, browserLanguages) {
  if (stored in STRINGS) return stored;
  for (const tag of browserLanguages ?? []) {
    const base = tag.toLowerCase().split("-")[0];
    if (base in STRINGS) return base;
  }
  return "en";
}

let current = detectLanguage(readStored(), navigator.languages ?? [navigator.language]);

function readStored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

/** The string for `key` in the current language, with `{name}` placeholders filled in. */
export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? EN[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

/** Whether `key` has a string (lets callers fall back to a server's message). */
export function has(key) {
  return key in EN;
}

export function getLanguage() {
  return current;
}

/** Switch language, remember the choice, re-translate the page and tell the listeners. */
export function setLanguage(lang) {
  if (!(lang in STRINGS)) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // private mode: the choice lasts for this page only
  }
  applyTranslations(document);
  for (const listener of listeners) listener(lang);
}

/** Call `fn(lang)` after each language switch; returns the unsubscribe function. */
export function onLanguageChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Attribute name → its dataset key, e.g. data-i18n-aria-label → dataset.i18nAriaLabel. */
const ATTRIBUTES = {
  placeholder: "i18nPlaceholder",
  "aria-label": "i18nAriaLabel",
  title: "i18nTitle",
};

/** Fill every marked element under root with the current language's strings. */
export function applyTranslations(root) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const [attribute, dataKey] of Object.entries(ATTRIBUTES)) {
    for (const node of root.querySelectorAll(`[data-i18n-${attribute}]`)) {
      node.setAttribute(attribute, t(node.dataset[dataKey]));
    }
  }
}

/** A short duration such as "12 s" or "2 min 5 s". */
export function formatDuration(seconds) {
  const total = Math.max(1, Math.round(seconds));
  if (total < 60) return t("time.seconds", { s: total });
  return t("time.minutes", { m: Math.floor(total / 60), s: total % 60 });
}

export function formatNumber(value) {
  return new Intl.NumberFormat(current === "zh" ? "zh-CN" : "en").format(value);
}

export function formatDate(iso) {
  const locale = current === "zh" ? "zh-CN" : "en";
  return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(
    new Date(iso),
  );
}

/** A user-facing sentence for an API error, from its `extensions.code`. */
export function describeError(error) {
  const key = `error.${error.code}`;
  return has(key) ? t(key) : t("error.generic", { message: error.message });
}
