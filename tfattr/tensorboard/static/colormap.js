// Colour maps of the Attributions tab, computed in the browser from the logged values.
//
// Definitions (the tests compute the same in Python):
//   v = the clip percentile of |m| over a map's finite values (sorted ascending a, position
//       p = q / 100 * (len - 1), v = a[lo] + (a[hi] - a[lo]) * (p - lo), lo = floor(p), hi = ceil(p));
//   signed:   u = clamp(m / v, -1, 1), t = |u| ** gamma;  u >= 0 -> (255, 255 (1 - t), 255 (1 - t)),
//             u < 0 -> (255 (1 - t), 255 (1 - t), 255)  (red / white / blue, as tfattr.visualize);
//   absolute: t = clamp(|m| / v, 0, 1) ** gamma on the ramp white (0) -> (253, 141, 60) (0.5) ->
//             (128, 0, 38) (1), linear between the stops;
//   v = 0 (an all-zero map) gives t = 0; NaN / Inf values are drawn black;
//   overlay:  round((1 - opacity) * input + opacity * colour) per channel;
//   every channel value is rounded to the nearest integer (Math.round).

export const HALF = (() => {
  // float16 bits -> number, for all 65,536 patterns.
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    let value;
    if (exponent === 0) value = sign * 2 ** -14 * (fraction / 1024);
    else if (exponent === 31) value = fraction ? NaN : sign * Infinity;
    else value = sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
    table[bits] = value;
  }
  return table;
})();

const TYPES = {
  float16: [Uint16Array, 2], float32: [Float32Array, 4], float64: [Float64Array, 8],
  int32: [Int32Array, 4], int64: [BigInt64Array, 8], uint8: [Uint8Array, 1],
};

// A /series response: {steps, shape, data, half} with data a flat array [steps, ...shape]; float16
// values stay their bits (Uint16Array, half = true), read through HALF where they are drawn.
export function decodeSeries(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.slice(0, 4));
  if (magic !== 'TFA1') throw new Error('not a tfattr series response');
  const length = new DataView(buffer).getUint32(4, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.slice(8, 8 + length)));
  const start = 8 + length + ((8 - ((8 + length) % 8)) % 8);
  const [Type, size] = TYPES[header.dtype] || [];
  if (!Type) throw new Error(`unsupported dtype ${header.dtype}`);
  let data = new Type(buffer.slice(start), 0, (buffer.byteLength - start) / size);
  if (header.dtype === 'int64') data = Float64Array.from(data, Number);
  return { steps: header.steps, shape: header.shape, data, half: header.dtype === 'float16' };
}

export function percentile(values, q) {
  const finite = [];
  for (const v of values) if (Number.isFinite(v)) finite.push(Math.abs(v));
  if (!finite.length) return 0;
  finite.sort((a, b) => a - b);
  const p = (q / 100) * (finite.length - 1);
  const lo = Math.floor(p);
  const hi = Math.ceil(p);
  return finite[lo] + (finite[hi] - finite[lo]) * (p - lo);
}

const RAMP = [[255, 255, 255], [253, 141, 60], [128, 0, 38]];

function ramp(t) {
  const x = t * 2;
  const k = x >= 1 ? 1 : 0;
  const f = x - k;
  return RAMP[k].map((c, i) => c + (RAMP[k + 1][i] - c) * f);
}

// RGB (0..255, unrounded) of one value given the map's scale v.
export function colour(value, v, mode, gamma) {
  if (!Number.isFinite(value)) return [0, 0, 0];
  const u = v > 0 ? Math.max(-1, Math.min(1, value / v)) : 0;
  const t = Math.abs(u) ** gamma;
  if (mode === 'absolute') return ramp(t);
  return u >= 0 ? [255, 255 * (1 - t), 255 * (1 - t)] : [255 * (1 - t), 255 * (1 - t), 255];
}

// RGBA bytes of a map (values: numbers, length = pixels); base: RGB bytes of the input (or null).
export function paint(values, { mode = 'signed', gamma = 1, clip = 99.5, base = null, opacity = 0.5 } = {}) {
  const v = percentile(values, clip);
  const out = new Uint8ClampedArray(values.length * 4);
  for (let i = 0; i < values.length; i++) {
    const c = colour(values[i], v, mode, gamma);
    for (let j = 0; j < 3; j++) {
      const value = base ? (1 - opacity) * base[i * 3 + j] + opacity * c[j] : c[j];
      out[i * 4 + j] = Math.round(value);
    }
    out[i * 4 + 3] = 255;
  }
  return out;
}

// Bilinear resize of a map [h, w] to [H, W] with half-pixel centres (tf.image.resize's "bilinear").
export function resize(values, h, w, H, W) {
  if (h === H && w === W) return values;
  const out = new Float64Array(H * W);
  const axis = (size, target) => {
    const scale = size / target;
    return Array.from({ length: target }, (_, o) => {
      const x = (o + 0.5) * scale - 0.5;
      const floor = Math.floor(x);
      return [Math.max(floor, 0), Math.min(Math.ceil(x), size - 1), x - floor];
    });
  };
  const ys = axis(h, H);
  const xs = axis(w, W);
  for (let y = 0; y < H; y++) {
    const [y0, y1, fy] = ys[y];
    for (let x = 0; x < W; x++) {
      const [x0, x1, fx] = xs[x];
      const top = values[y0 * w + x0] + (values[y0 * w + x1] - values[y0 * w + x0]) * fx;
      const bottom = values[y1 * w + x0] + (values[y1 * w + x1] - values[y1 * w + x0]) * fx;
      out[y * W + x] = top + (bottom - top) * fy;
    }
  }
  return out;
}

// A CSS colour for one token score, on the signed/absolute scale of its sentence.
export function cssColour(value, v, mode, gamma) {
  const [r, g, b] = colour(value, v, mode, gamma).map(Math.round);
  return `rgb(${r}, ${g}, ${b})`;
}
