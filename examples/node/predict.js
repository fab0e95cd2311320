#!/usr/bin/env node
// Serve a zoo export from Node.js with onnxruntime-node, following zoo.format (zoo/format.schema.json) only:
// read the metadata from model.onnx, decode each PNG by the format's decode rules, feed the uint8 pixels
// (the graph resizes, converts colour and scales them itself) and print one JSON line per image, as
// `zoo predict model=MODEL input=...` does. Usage: node predict.js MODEL.onnx IMAGE.png... [--topk=N] [--mask-hash]
// The uint8 graph also fits the image itself (preprocessing.resize.fit: stretch, or crop: the weights' centre
// crop, computed in the graph from the input's shape), so this client feeds the decoded pixels whatever the fit.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const ort = require("onnxruntime-node");
const { PNG } = require("pngjs");

const READS_MAJOR = 3; // the zoo.format major version this client follows

// ---- metadata: ModelProto.metadata_props (field 14), read with a minimal protobuf walker ----------------

function varint(buf, pos) {
  let value = 0n;
  let shift = 0n;
  for (;;) {
    const b = buf[pos++];
    value |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [value, pos];
    shift += 7n;
  }
}

function fields(buf, start, end, visit) {
  let pos = start;
  while (pos < end) {
    let tag;
    [tag, pos] = varint(buf, pos);
    const field = Number(tag >> 3n);
    const wire = Number(tag & 7n);
    if (wire === 0) [, pos] = varint(buf, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len;
      [len, pos] = varint(buf, pos);
      visit(field, pos, pos + Number(len));
      pos += Number(len);
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
}

function readMetadata(file) {
  const buf = fs.readFileSync(file);
  const meta = {};
  fields(buf, 0, buf.length, (field, start, end) => {
    if (field !== 14) return;
    let key = "";
    let value = "";
    fields(buf, start, end, (f, s, e) => {
      if (f === 1) key = buf.toString("utf8", s, e);
      if (f === 2) value = buf.toString("utf8", s, e);
    });
    if (key.startsWith("zoo.")) meta[key.slice(4)] = JSON.parse(value);
  });
  return meta;
}

function checkMetadata(meta, file) {
  const major = parseInt(String(meta.format ?? "1").split(".")[0], 10);
  if (major !== READS_MAJOR) {
    throw new Error(`${file} has zoo metadata format ${JSON.stringify(meta.format)}; this client reads ${READS_MAJOR}.x`);
  }
  if (meta.input.form !== "uint8") {
    throw new Error(`${file} takes ${meta.input.form} input; this client feeds uint8 pixels (export.input=uint8)`);
  }
  if (meta.input.color === "bands") {
    throw new Error(`${file} takes ${meta.input.channels}-channel arrays (input.color bands); this client feeds RGB images`);
  }
}

// ---- decoding: height x width x 3 RGB uint8, by preprocessing.decode ------------------------------------

function decode(file) {
  const png = PNG.sync.read(fs.readFileSync(file), { skipRescale: true });
  const { width, height, data, depth, colorType } = png;
  const rgb = new Uint8Array(width * height * 3);
  const low = colorType !== 3 && depth < 8 ? 255 / (2 ** depth - 1) : 1; // 1, 2, 4-bit grey: scaled to 8 bits
  for (let i = 0, j = 0; i < width * height * 4; i += 4, j += 3) {
    for (let c = 0; c < 3; c++) {
      const v = data[i + c]; // RGBA from pngjs: grey copied to R, G, B; palette expanded; alpha dropped here
      rgb[j + c] = depth === 16 ? v >> 8 : Math.round(v * low); // 16-bit: the high byte
    }
  }
  return { rgb, height, width };
}

// ---- per-task JSON, as zoo predict prints it ------------------------------------------------------------

const round = (v, digits) => Number(v.toFixed(digits));
const label = (meta, i) => (i >= 0 && i < meta.labels.length ? meta.labels[i] : String(i));

function predictOne(meta, out, image, options) {
  const roles = Object.fromEntries(meta.outputs.map((o) => [o.role, out[o.name]]));
  if (meta.task === "classification") {
    const p = Array.from(roles.probabilities.data);
    const order = p.map((v, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    const topk = order.slice(0, Math.max(1, Math.min(options.topk, p.length)));
    const top = topk.map((i) => ({ label: label(meta, i), score: round(p[i], 6) }));
    return { label: top[0].label, index: topk[0], score: top[0].score, topk: top };
  }
  if (meta.task === "regression") {
    const v = Array.from(roles.values.data);
    return { values: Object.fromEntries(v.map((x, j) => [label(meta, j), round(x, 6)])) };
  }
  if (meta.task === "segmentation") {
    const mask = roles.mask;
    const [, h, w] = mask.dims;
    const counts = new Map();
    for (const v of mask.data) counts.set(Number(v), (counts.get(Number(v)) || 0) + 1);
    const pixels = {};
    for (const c of [...counts.keys()].sort((a, b) => a - b)) pixels[label(meta, c)] = round(counts.get(c) / (h * w), 6);
    const result = { size: [h, w], pixels };
    if (options.maskHash) {
      const bytes = Buffer.from(BigInt64Array.from(mask.data).buffer); // int64 little-endian, as numpy's
      result.mask_sha256 = crypto.createHash("sha256").update(bytes).digest("hex");
    }
    return result;
  }
  if (meta.task === "detection") {
    const n = Number(roles.num_detections.data[0]);
    const [netH, netW] = meta.preprocessing.resize ? meta.preprocessing.resize.size : [image.height, image.width];
    const sx = image.width / netW; // postprocessing.box.to_original: each axis on its own
    const sy = image.height / netH;
    const detections = [];
    for (let k = 0; k < n; k++) {
      const b = roles.boxes.data.slice(k * 4, k * 4 + 4);
      const index = Number(roles.labels.data[k]);
      detections.push({
        label: label(meta, index),
        index,
        score: round(roles.scores.data[k], 6),
        box: [round(b[0] * sx, 2), round(b[1] * sy, 2), round(b[2] * sx, 2), round(b[3] * sy, 2)],
      });
    }
    return { detections };
  }
  throw new Error(`task ${meta.task} is not one this client knows`);
}

async function main(argv) {
  const options = { topk: 5, maskHash: false };
  const files = [];
  for (const a of argv) {
    if (a.startsWith("--topk=")) options.topk = parseInt(a.slice(7), 10);
    else if (a === "--mask-hash") options.maskHash = true;
    else files.push(a);
  }
  const [model, ...images] = files;
  if (!model || images.length === 0) throw new Error("usage: node predict.js MODEL.onnx IMAGE.png... [--topk=N]");
  const meta = readMetadata(model);
  checkMetadata(meta, model);
  const session = await ort.InferenceSession.create(model, { executionProviders: ["cpu"] });
  const [minH, minW] = meta.input.min_size;
  let failed = 0;
  for (const file of images) {
    try {
      const image = decode(file);
      if (image.height < minH || image.width < minW) {
        throw new Error(`image ${file} is ${image.height}x${image.width}; this model takes at least ${minH}x${minW}`);
      }
      const input = new ort.Tensor("uint8", image.rgb, [1, image.height, image.width, 3]); // NHWC
      const out = await session.run({ [meta.input.name]: input });
      console.log(JSON.stringify({ file, ...predictOne(meta, out, image, options) }));
    } catch (e) {
      failed++;
      console.error(`error: ${file}: ${e.message}`);
    }
  }
  return failed ? 2 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`error: ${e.message}`);
      process.exit(2);
    },
  );
}

module.exports = { readMetadata, decode, predictOne };
