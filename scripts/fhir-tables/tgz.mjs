// Minimal reader for the FHIR package tarballs (.tgz): file name -> contents.
import fs from 'node:fs';
import zlib from 'node:zlib';

export function readTgz(file) {
  const buf = zlib.gunzipSync(fs.readFileSync(file));
  const files = new Map();
  let off = 0;
  let longName = null;
  while (off + 512 <= buf.length) {
    const header = buf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (s, n) => header.subarray(s, s + n).toString('utf8').replace(/\0.*$/s, '');
    let name = field(0, 100);
    const prefix = field(345, 155);
    if (prefix) name = `${prefix}/${name}`;
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const type = String.fromCharCode(header[156] || 48);
    const body = buf.subarray(off + 512, off + 512 + size);
    if (type === 'L') {
      longName = body.toString('utf8').replace(/\0.*$/s, '');
    } else {
      if (longName) {
        name = longName;
        longName = null;
      }
      if (type === '0' || type === '\0') files.set(name, body);
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

