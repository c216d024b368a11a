// torch2ort bundle page: runs the bundle's model with onnxruntime-web, with the manifest's image
// preprocessing and postprocessing done here in JS, so the browser needs no server-side inference.
//
// The image steps reproduce the Python runtime (torch2ort/runtime/processors/image.py) exactly:
// `resize` is Pillow's Image.resize, the same two-pass separable convolution with the same
// 22-bit fixed-point coefficients and rounding, so for the same decoded pixels the resized image is
// bit-identical. Python's round() (half to even) is used wherever the Python runtime rounds.
"use strict";

const T2O = (() => {
  // ---------------------------------------------------------------- Pillow-compatible resampling
  const PRECISION_BITS = 32 - 8 - 2;
  const ONE = 2 ** PRECISION_BITS;

  function sinc(x) {
    if (x === 0) return 1;
    x *= Math.PI;
    return Math.sin(x) / x;
  }

  const F054 = Math.fround(0.54), F046 = Math.fround(0.46);
  // Pillow's filters (src/libImaging/Resample.c): [support, kernel].
  const FILTERS = {
    box: [0.5, (x) => (x > -0.5 && x <= 0.5 ? 1 : 0)],
    bilinear: [1, (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; }],
    hamming: [1, (x) => {
      x = Math.abs(x);
      if (x === 0) return 1;
      if (x >= 1) return 0;
      x *= Math.PI;
      return (Math.sin(x) / x) * (F054 + F046 * Math.cos(x)); // C float constants
    }],
    bicubic: [2, (x) => {
      const a = -0.5;
      x = Math.abs(x);
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    }],
    lanczos: [3, (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0)],
  };

  // Per output pixel: the first input pixel, how many are used, and their fixed-point weights.
  function coefficients(inSize, outSize, filterName) {
    const [baseSupport, kernel] = FILTERS[filterName];
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    const support = baseSupport * filterScale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const weights = new Float64Array(outSize * ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const center = (xx + 0.5) * scale;
      const ss = 1 / filterScale;
      const xmin = Math.max(0, Math.trunc(center - support + 0.5));
      const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
      let ww = 0;
      const row = new Float64Array(xmax);
      for (let x = 0; x < xmax; x++) {
        row[x] = kernel((x + xmin - center + 0.5) * ss);
        ww += row[x];
      }
      for (let x = 0; x < xmax; x++) {
        const k = ww !== 0 ? row[x] / ww : row[x];
        // (int)(k * ONE ± 0.5): C truncates toward zero.
        weights[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * ONE : 0.5 + k * ONE);
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize, bounds, weights };
  }

  function clip8(acc) {
    const v = Math.floor(acc / ONE);
    return v < 0 ? 0 : v > 255 ? 255 : v;
  }

  // img: {width, height, channels, data: Uint8Array, row-major HWC}
  function resampleHorizontal(img, outWidth, co, rowFirst, rowCount) {
    const c = img.channels;
    const out = new Uint8Array(outWidth * rowCount * c);
    for (let y = 0; y < rowCount; y++) {
      const src = (y + rowFirst) * img.width * c;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = co.bounds[xx * 2], xmax = co.bounds[xx * 2 + 1], k = xx * co.ksize;
        for (let ch = 0; ch < c; ch++) {
          let acc = ONE / 2;
          for (let x = 0; x < xmax; x++) acc += img.data[src + (x + xmin) * c + ch] * co.weights[k + x];
          out[(y * outWidth + xx) * c + ch] = clip8(acc);
        }
      }
    }
    return { width: outWidth, height: rowCount, channels: c, data: out };
  }

  function resampleVertical(img, outHeight, co, rowShift) {
    const c = img.channels, w = img.width;
    const out = new Uint8Array(w * outHeight * c);
    for (let yy = 0; yy < outHeight; yy++) {
      const ymin = co.bounds[yy * 2] - rowShift, ymax = co.bounds[yy * 2 + 1], k = yy * co.ksize;
      for (let xx = 0; xx < w; xx++) {
        for (let ch = 0; ch < c; ch++) {
          let acc = ONE / 2;
          for (let y = 0; y < ymax; y++) acc += img.data[((y + ymin) * w + xx) * c + ch] * co.weights[k + y];
          out[(yy * w + xx) * c + ch] = clip8(acc);
        }
      }
    }
    return { width: w, height: outHeight, channels: c, data: out };
  }

  // Pillow's ImagingResample for 8-bit images: horizontal pass over the rows the vertical pass
  // needs, then the vertical pass; a pass whose size does not change is skipped.
  function pilResize(img, outWidth, outHeight, filterName) {
    if (!(filterName in FILTERS)) {
      throw new Error(`resize filter ${JSON.stringify(filterName)} is not supported by the web page; ` +
        `supported: ${Object.keys(FILTERS).join(", ")}`);
    }
    const needH = outWidth !== img.width, needV = outHeight !== img.height;
    const coH = coefficients(img.width, outWidth, filterName);
    const coV = coefficients(img.height, outHeight, filterName);
    let cur = img, shift = 0;
    if (needH) {
      const first = coV.bounds[0];
      const last = coV.bounds[outHeight * 2 - 2] + coV.bounds[outHeight * 2 - 1];
      cur = resampleHorizontal(img, outWidth, coH, needV ? first : 0, needV ? last - first : img.height);
      shift = needV ? first : 0;
    }
    if (needV) cur = resampleVertical(cur, outHeight, coV, shift);
    return needH || needV ? cur : { ...img, data: img.data.slice() };
  }

  // ---------------------------------------------------------------- tensors and Python's rounding
  function pyRound(x) { // round half to even, like Python's round()
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  function isImage(v) { return v && v.channels !== undefined && v.data instanceof Uint8Array; }

  function asTensor(v) { // an image becomes float32 HWC (or HW for one channel), like np.asarray(img)
    if (!isImage(v)) return v;
    const shape = v.channels === 1 ? [v.height, v.width] : [v.height, v.width, v.channels];
    return { shape, data: Float32Array.from(v.data) };
  }

  // rgba: Uint8ClampedArray from a canvas. Pillow's convert("RGB") drops alpha; convert("L") is
  // ITU-R 601-2 luma in 16-bit fixed point with rounding.
  function fromRGBA(rgba, width, height, mode) {
    const n = width * height;
    if (mode === "L") {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        out[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
      }
      return { width, height, channels: 1, data: out };
    }
    if (mode !== "RGB") throw new Error(`load_image mode ${JSON.stringify(mode)}: the web page supports RGB and L`);
    const out = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      out[3 * i] = rgba[4 * i]; out[3 * i + 1] = rgba[4 * i + 1]; out[3 * i + 2] = rgba[4 * i + 2];
    }
    return { width, height, channels: 3, data: out };
  }

  // ---------------------------------------------------------------- preprocess steps (manifest ops)
  const PRE = {
    // load_image is done by the page (decoding needs the DOM); the step here converts the mode.
    load_image(value, p) { return fromRGBA(value.rgba, value.width, value.height, p.mode || "RGB"); },
    resize(img, p) {
      if (!isImage(img)) throw new Error("resize needs an image (put it before scale/normalize)");
      const size = p.size;
      let w, h;
      const fit = p.rounding === "floor" ? Math.floor : pyRound; // floor: transformers' int(size * long / short)
      if (typeof size === "number") {
        if (img.width <= img.height) { w = size; h = Math.max(1, fit((img.height * size) / img.width)); }
        else { w = Math.max(1, fit((img.width * size) / img.height)); h = size; }
      } else { h = size[0]; w = size[1]; }
      return pilResize(img, w, h, p.filter || "bilinear");
    },
    center_crop(v, p) {
      const [th, tw] = typeof p.size === "number" ? [p.size, p.size] : p.size;
      if (isImage(v)) {
        if (th > v.height || tw > v.width) {
          throw new Error(`center_crop ${th}x${tw} is larger than the image ${v.height}x${v.width}`);
        }
        const place = p.offset === "floor" ? Math.floor : pyRound; // floor: transformers' (h - th) // 2
        const top = place((v.height - th) / 2), left = place((v.width - tw) / 2), c = v.channels;
        const out = new Uint8Array(th * tw * c);
        for (let y = 0; y < th; y++) {
          const start = ((top + y) * v.width + left) * c;
          out.set(v.data.subarray(start, start + tw * c), y * tw * c);
        }
        return { width: tw, height: th, channels: c, data: out };
      }
      throw new Error("center_crop needs an image (put it before scale/normalize)");
    },
    to_array(v) { return asTensor(v); },
    scale(v, p) {
      const t = asTensor(v);
      const f = Math.fround(p.factor === undefined ? 1 / 255 : p.factor);
      const out = new Float32Array(t.data.length);
      for (let i = 0; i < out.length; i++) out[i] = t.data[i] * f;
      return { shape: t.shape, data: out };
    },
    normalize(v, p) {
      const t = asTensor(v);
      const mean = Float32Array.from([].concat(p.mean)), std = Float32Array.from([].concat(p.std));
      const c = t.shape.length === 3 ? t.shape[2] : 1;
      const out = new Float32Array(t.data.length);
      for (let i = 0; i < out.length; i++) {
        const ch = mean.length === 1 ? 0 : i % c;
        out[i] = Math.fround(t.data[i] - mean[ch]) / std[mean.length === 1 ? 0 : ch];
      }
      return { shape: t.shape, data: out };
    },
    hwc_to_chw(v) {
      const t = asTensor(v);
      if (t.shape.length === 2) return { shape: [1, ...t.shape], data: t.data };
      const [h, w, c] = t.shape, out = new Float32Array(t.data.length);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let ch = 0; ch < c; ch++) {
        out[(ch * h + y) * w + x] = t.data[(y * w + x) * c + ch];
      }
      return { shape: [c, h, w], data: out };
    },
    add_batch(v) { const t = asTensor(v); return { shape: [1, ...t.shape], data: t.data }; },
    to_input(v, p) { return { [p.name]: asTensor(v) }; },
  };

  function preprocess(steps, decoded) {
    let value = decoded;
    for (const step of steps) {
      const { op, ...params } = step;
      if (!(op in PRE)) throw new Error(`preprocess step ${JSON.stringify(op)} has no web implementation`);
      value = PRE[op](value, params);
    }
    return asTensor(value);
  }

  // ---------------------------------------------------------------- postprocess steps
  function lastAxisRows(t) {
    const n = t.shape.length ? t.shape[t.shape.length - 1] : 1;
    const rows = [];
    for (let i = 0; i < t.data.length; i += n) rows.push(Array.from(t.data.subarray(i, i + n), Number));
    return rows;
  }

  function label(labels, i) { return labels && i >= 0 && i < labels.length ? labels[i] : String(i); }

  const POST = {
    softmax(ctx, p) {
      const t = ctx.tensor(p.output);
      if (p.axis !== undefined && p.axis !== -1 && p.axis !== t.shape.length - 1) {
        throw new Error("softmax: the web page supports the last axis only");
      }
      const out = new Float32Array(t.data.length);
      let i = 0;
      for (const row of lastAxisRows(t)) {
        const m = Math.max(...row);
        const e = row.map((x) => Math.exp(x - m));
        const s = e.reduce((a, b) => a + b, 0);
        for (const x of e) out[i++] = x / s;
      }
      ctx.results[p.name || p.output] = { shape: t.shape, data: out };
    },
    sigmoid(ctx, p) {
      const t = ctx.tensor(p.output);
      ctx.results[p.name || p.output] = { shape: t.shape, data: t.data.map((x) => 1 / (1 + Math.exp(-x))) };
    },
    topk(ctx, p) {
      const rows = lastAxisRows(ctx.tensor(p.output));
      ctx.results[p.name || "topk"] = rows.map((row) => {
        const k = Math.min(p.k === undefined ? 5 : p.k, row.length);
        const order = row.map((_, i) => i).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
        return order.map((i) => ({ label: label(ctx.labels, i), index: i, score: row[i] }));
      });
    },
    argmax(ctx, p) {
      const rows = lastAxisRows(ctx.tensor(p.output));
      const idx = rows.map((row) => row.reduce((best, x, i) => (x > row[best] ? i : best), 0));
      const name = p.name || "label";
      ctx.results[name] = idx.map((i) => label(ctx.labels, i));
      ctx.results[`${name}_index`] = idx;
    },
    threshold(ctx, p) {
      const rows = lastAxisRows(ctx.tensor(p.output));
      const th = p.threshold === undefined ? 0.5 : p.threshold;
      ctx.results[p.name || "labels"] = rows.map((row) => row.flatMap((x, i) => (x >= th ? [label(ctx.labels, i)] : [])));
    },
  };

  function postprocess(steps, raw, labels) {
    const ctx = {
      labels, results: { ...raw },
      tensor(name) {
        if (name in this.results) return this.results[name];
        throw new Error(`postprocess refers to ${JSON.stringify(name)}; available: ${Object.keys(this.results).join(", ")}`);
      },
    };
    for (const step of steps) {
      const { op, ...params } = step;
      if (!(op in POST)) throw new Error(`postprocess step ${JSON.stringify(op)} has no web implementation`);
      POST[op](ctx, params);
    }
    return ctx.results;
  }

  return { pilResize, preprocess, postprocess, pyRound, fromRGBA, PRE, POST, FILTERS };
})();

if (typeof module !== "undefined") module.exports = T2O;

// ==================================================================== the page
if (typeof document !== "undefined") {
  const $ = (id) => document.getElementById(id);
  const page = { ready: null, manifest: null, session: null, info: {}, lastInput: null, lastResults: null };
  self.t2oPage = page;

  function status(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.className = kind || "";
  }

  async function sha256Hex(bytes) {
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function describePipeline(steps) {
    return steps.map((s) => {
      const { op, ...p } = s;
      if (op === "resize") return `resize ${JSON.stringify(p.size)} (${p.filter || "bilinear"}, Pillow-exact)`;
      if (op === "center_crop") return `center crop ${JSON.stringify(p.size)}`;
      if (op === "normalize") return "normalize (mean/std)";
      return op;
    }).join(" → ");
  }

  async function load() {
    const manifest = await (await fetch("../torch2ort.json", { cache: "no-store" })).json();
    page.manifest = manifest;
    $("name").textContent = manifest.name;
    document.title = `${manifest.name} · torch2ort`;
    $("pipeline").textContent = describePipeline(manifest.preprocess || []) || "none";
    const parity = manifest.parity;
    $("parity").textContent = parity
      ? `${parity.passed ? "passed" : "FAILED"} against PyTorch (atol ${parity.atol}, rtol ${parity.rtol}, ${parity.cases} cases)`
      : "not recorded in this bundle";

    const modelBytes = new Uint8Array(await (await fetch(`../${manifest.model}`)).arrayBuffer());
    if (self.crypto && crypto.subtle) {
      const got = await sha256Hex(modelBytes);
      if (got !== manifest.files[manifest.model]) {
        throw new Error(`${manifest.model} does not match its sha256 in torch2ort.json; refusing to run it`);
      }
      page.info.checksum = "sha256 checked";
    } else {
      page.info.checksum = "sha256 not checked (needs a secure context: https or localhost)";
    }
    const known = new Set([manifest.model, "README.md", "requirements.txt", "tokenizer.json"]);
    const externalData = Object.keys(manifest.files)
      .filter((f) => !known.has(f) && !f.startsWith("web/"))
      .map((f) => ({ path: f, data: `../${f}` }));

    const threads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href; // relative to the page, not to ort.js
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = "error";
    page.session = await ort.InferenceSession.create(modelBytes, {
      executionProviders: ["wasm"], graphOptimizationLevel: "all", ...(externalData.length ? { externalData } : {}),
    });
    page.info.version = ort.env.versions ? (ort.env.versions.web || ort.env.versions.common) : "unknown";
    page.info.threads = threads;
    page.info.crossOriginIsolated = self.crossOriginIsolated === true;
    $("runtime").textContent = `onnxruntime-web ${page.info.version}, WASM, ${threads} thread${threads > 1 ? "s" : ""}` +
      (page.info.crossOriginIsolated ? "" : " (page not cross-origin isolated, so no threads)") + `; ${page.info.checksum}`;
    status("Model loaded. Pick an image.", "ok");
    $("file").disabled = false;
  }

  async function decode(file) {
    // No colour management and no premultiplication: the pixels Pillow would read from the file.
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const g = canvas.getContext("2d", { willReadFrequently: true });
    g.drawImage(bitmap, 0, 0);
    const { data } = g.getImageData(0, 0, bitmap.width, bitmap.height);
    return { rgba: data, width: bitmap.width, height: bitmap.height };
  }

  function render(results, ms) {
    const out = $("results");
    out.replaceChildren();
    const topk = Object.values(results).find((v) => Array.isArray(v) && Array.isArray(v[0]) && v[0][0] && "score" in v[0][0]);
    if (topk) {
      const best = topk[0][0];
      const head = document.createElement("p");
      head.className = "top1";
      head.dataset.top1 = best.label;
      head.textContent = best.label;
      out.append(head);
      const table = document.createElement("table");
      for (const r of topk[0]) {
        const tr = table.insertRow();
        tr.insertCell().textContent = r.label;
        const bar = tr.insertCell();
        const fill = document.createElement("span");
        fill.className = "bar";
        fill.style.width = `${Math.max(0.5, r.score * 100).toFixed(1)}%`;
        bar.append(fill);
        tr.insertCell().textContent = r.score.toFixed(4);
      }
      out.append(table);
    } else {
      for (const [name, v] of Object.entries(results)) {
        const p = document.createElement("p");
        if (name === "label") p.dataset.top1 = v[0];
        const shown = v && v.data ? `[${v.shape.join(", ")}] ${Array.from(v.data.slice(0, 8), (x) => Number(x).toFixed(4)).join(", ")}…`
          : JSON.stringify(v);
        p.textContent = `${name}: ${shown}`;
        out.append(p);
      }
    }
    $("timing").textContent = `preprocess + inference + postprocess: ${ms.toFixed(1)} ms in this browser`;
  }

  async function classify(file) {
    const m = page.manifest;
    status(`Running on ${file.name}…`);
    $("preview").src = URL.createObjectURL(file);
    const t0 = performance.now();
    const decoded = await decode(file);
    const tensor = T2O.preprocess(m.preprocess, decoded);
    const feeds = tensor.data ? { [m.inputs[0].name]: tensor } : tensor;
    const ortFeeds = {};
    for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor("float32", t.data, t.shape);
    const outs = await page.session.run(ortFeeds);
    const raw = {};
    for (const name of page.session.outputNames) raw[name] = { shape: Array.from(outs[name].dims), data: outs[name].data };
    const results = T2O.postprocess(m.postprocess || [], raw, m.labels);
    const ms = performance.now() - t0;
    page.lastInput = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, { shape: t.shape, data: t.data }]));
    page.lastResults = results;
    page.lastFile = file.name;
    render(results, ms);
    status(`${file.name}: ${decoded.width}×${decoded.height}`, "ok");
    return results;
  }

  function onFile(file) {
    if (!file) return;
    classify(file).catch((e) => status(`Could not classify ${file.name}: ${e.message || e}`, "error"));
  }

  page.classify = classify;
  page.decode = decode;
  page.ready = load().then(() => true, (e) => {
    status(`Could not load the model: ${e.message || e}`, "error");
    page.info.error = String(e.message || e);
    return false;
  });
  $("file").addEventListener("change", (ev) => onFile(ev.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); onFile(ev.dataTransfer.files[0]); });
}
