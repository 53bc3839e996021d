/**
 * A folder the browser's directory picker gave, as one .zip (entries stored, not compressed: pictures are
 * compressed already), so that a folder and a zip reach POST /api/datasets the same way. The format is
 * PKWARE's APPNOTE: a local header before each file, a central directory, and its end record; names in UTF-8
 * (flag bit 11). Zip32 only, which holds the 100 MB and 20,000 pictures a data set may have.
 */

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (the zip polynomial) of bytes. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const UTF8 = 0x0800;
const DOS_DATE = ((2020 - 1980) << 9) | (1 << 5) | 1; // 2020-01-01: the server ignores times

function header(size, fields) {
  const buf = new ArrayBuffer(size);
  const view = new DataView(buf);
  let at = 0;
  for (const [bytes, value] of fields) {
    if (bytes === 4) view.setUint32(at, value, true);
    else view.setUint16(at, value, true);
    at += bytes;
  }
  return new Uint8Array(buf);
}

/**
 * A Blob of a zip holding `files`: [{name: 'class/picture.jpg', file: File}]. `onProgress(done, total)` is
 * told after each file is read.
 */
export async function zipFiles(files, onProgress = () => {}) {
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const [i, { name, file }] of files.entries()) {
    const data = new Uint8Array(await file.arrayBuffer());
    const nameBytes = encoder.encode(name);
    const crc = crc32(data);
    const local = header(30, [[4, 0x04034b50], [2, 20], [2, UTF8], [2, 0], [2, 0], [2, DOS_DATE], [4, crc],
      [4, data.length], [4, data.length], [2, nameBytes.length], [2, 0]]);
    parts.push(local, nameBytes, data);
    central.push(header(46, [[4, 0x02014b50], [2, 20], [2, 20], [2, UTF8], [2, 0], [2, 0], [2, DOS_DATE],
      [4, crc], [4, data.length], [4, data.length], [2, nameBytes.length], [2, 0], [2, 0], [2, 0], [2, 0],
      [4, 0], [4, offset]]), nameBytes);
    offset += local.length + nameBytes.length + data.length;
    onProgress(i + 1, files.length);
  }
  const size = central.reduce((n, b) => n + b.length, 0);
  const end = header(22, [[4, 0x06054b50], [2, 0], [2, 0], [2, files.length], [2, files.length], [4, size],
    [4, offset], [2, 0]]);
  return new Blob([...parts, ...central, end], { type: 'application/zip' });
}
