// Opening and checking a bundle (docs/bundle-spec.md, sections 1-2).
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, readFile, realpath } from "node:fs/promises";
import path from "node:path";

export const FORMAT_VERSION = 1;
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_DEPTH = 32;
const MAX_ELEMENTS = 2 ** 34;
const FAMILIES = { cnn: "image-classification", lstm: "text-classification", gpt2: "text-generation" };

/** A bundle that cannot be used: malformed, corrupt, truncated or hostile. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

/** A relative POSIX path inside the bundle (the spec's path rule); throws BundleError otherwise. */
export function checkPath(p, where) {
  if (typeof p !== "string" || p.length === 0 || p.length > 255) {
    throw new BundleError(`${where}: path must be a non-empty string of at most 255 characters`);
  }
  if (p.includes("\\") || p.includes("\0") || p.startsWith("/") || /^[A-Za-z]:/.test(p)) {
    throw new BundleError(`${where}: path ${JSON.stringify(p)} is absolute or not a plain POSIX path`);
  }
  if (p.split("/").some((part) => part === "" || part === "." || part === "..")) {
    throw new BundleError(`${where}: path ${JSON.stringify(p)} escapes the bundle or is not normalised`);
  }
  return p;
}

function depth(text) {
  let level = 0, deepest = 0, inString = false, escaped = false;
  for (const ch of text) {
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === "\\") escaped = true;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "[" || ch === "{") deepest = Math.max(deepest, ++level);
    else if (ch === "]" || ch === "}") level--;
  }
  return deepest;
}

/** Parse manifest bytes and apply the spec's checks (the parts a client needs; see section 2). */
export function parseManifest(raw) {
  if (raw.length > MAX_MANIFEST_BYTES) throw new BundleError(`manifest.json is over ${MAX_MANIFEST_BYTES} bytes`);
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw new BundleError("manifest.json is not UTF-8");
  }
  if (depth(text) > MAX_DEPTH) throw new BundleError(`manifest.json nests deeper than ${MAX_DEPTH} levels`);
  let doc;
  try {
    doc = JSON.parse(text); // JSON.parse refuses NaN and Infinity, as the spec requires
  } catch (e) {
    throw new BundleError(`manifest.json is not valid JSON: ${e.message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new BundleError("manifest.json must hold an object");
  if (doc.format_version !== FORMAT_VERSION) {
    throw new BundleError(`unknown bundle format_version ${JSON.stringify(doc.format_version)}; this client reads ${FORMAT_VERSION}`);
  }
  if (FAMILIES[doc.family] === undefined || FAMILIES[doc.family] !== doc.task) {
    throw new BundleError(`family ${JSON.stringify(doc.family)} with task ${JSON.stringify(doc.task)} is not a known pair`);
  }
  if (!Array.isArray(doc.artifacts) || !Array.isArray(doc.inputs) || !Array.isArray(doc.outputs)) {
    throw new BundleError("manifest.json needs artifacts, inputs and outputs lists");
  }
  const artifacts = new Map();
  doc.artifacts.forEach((a, i) => {
    const p = checkPath(a?.path, `artifacts[${i}].path`);
    if (!Number.isSafeInteger(a.size) || a.size < 0) throw new BundleError(`artifact ${p}: size must be a non-negative integer`);
    if (typeof a.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(a.sha256)) throw new BundleError(`artifact ${p}: bad sha256`);
    if (artifacts.has(p)) throw new BundleError(`artifact ${p} is listed twice`);
    artifacts.set(p, a);
  });
  for (const [where, p] of [["model", doc.model], ["tokenizer.path", doc.tokenizer?.path], ["target.path", doc.target?.path]]) {
    if (p === undefined && where !== "model") continue;
    if (!artifacts.has(checkPath(p, where))) throw new BundleError(`${where} ${JSON.stringify(p)} is not among the bundle's artifacts`);
  }
  for (const t of [...doc.inputs, ...doc.outputs]) {
    const fixed = (t.shape ?? []).filter((d) => typeof d === "number").reduce((a, b) => a * b, 1);
    if (fixed > MAX_ELEMENTS) throw new BundleError(`tensor ${t.name}: fixed dimensions hold an absurd ${fixed} elements`);
  }
  return { ...doc, artifactMap: artifacts };
}

async function sha256(file) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest("hex");
}

/** Check every artifact: no symlink on its path, a regular file inside the bundle, the recorded size and sha256. */
async function checkArtifacts(root, manifest, hash) {
  for (const [rel, art] of manifest.artifactMap) {
    let current = root, st;
    for (const part of rel.split("/")) {
      current = path.join(current, part);
      try {
        st = await lstat(current);
      } catch {
        throw new BundleError(`artifact ${rel} is missing from the bundle`);
      }
      if (st.isSymbolicLink()) throw new BundleError(`artifact ${rel} goes through a symlink`);
    }
    if (!st.isFile()) throw new BundleError(`artifact ${rel} is not a regular file`);
    const real = await realpath(current);
    if (path.relative(root, real).startsWith("..")) throw new BundleError(`artifact ${rel} resolves outside the bundle`);
    if (st.size < art.size) throw new BundleError(`artifact ${rel} is truncated: ${st.size} bytes, manifest says ${art.size}`);
    if (st.size > art.size) throw new BundleError(`artifact ${rel} is oversized: ${st.size} bytes, manifest says ${art.size}`);
    if (hash && (await sha256(current)) !== art.sha256) {
      throw new BundleError(`artifact ${rel} fails its sha256 check: the file is corrupt or was modified`);
    }
  }
}

/**
 * Open a bundle directory: parse and check its manifest, check every artifact (with `verify`, its
 * sha256 too). Returns { root, manifest, file(rel) }.
 */
export async function openBundle(dir, { verify = true } = {}) {
  const root = await realpath(dir).catch(() => {
    throw new BundleError(`${dir} is not a bundle directory`);
  });
  const manifestPath = path.join(root, "manifest.json");
  const st = await lstat(manifestPath).catch(() => {
    throw new BundleError(`${dir} has no manifest.json: not a reelrt bundle`);
  });
  if (!st.isFile()) throw new BundleError("manifest.json is not a regular file (symlinks are refused)");
  if (st.size > MAX_MANIFEST_BYTES) throw new BundleError(`manifest.json is over ${MAX_MANIFEST_BYTES} bytes`);
  const manifest = parseManifest(await readFile(manifestPath));
  await checkArtifacts(root, manifest, verify);
  return {
    root,
    manifest,
    file(rel) {
      if (!manifest.artifactMap.has(rel)) throw new BundleError(`${rel} is not an artifact of the bundle`);
      return path.join(root, rel);
    },
  };
}

/** The full check, sha256 of every artifact included. */
export async function verifyBundle(dir) {
  return openBundle(dir, { verify: true });
}
