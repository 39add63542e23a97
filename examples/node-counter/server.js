// node-counter: the counter of examples/counter (counter-app) as a Node.js app on the plain `http`
// module, no npm dependencies, following README's app contract: the same endpoints, answers,
// journal, digest hash (FNV-1a over each entry's compact JSON) and snapshots, so its replicas can
// be compared with counter-app's (whose digest also has "duplicates", of a test mode). Run it
// behind k8shmir-proxy:
//
//   node examples/node-counter/server.js --port 3000          # or PORT=3000 HOST=127.0.0.1
//   k8shmir-proxy --app-port 3000 --listen-port 8080 --etcd-endpoints 127.0.0.1:2379
//
// Two differences: a request without Log-Index (not replicated) may only read: a write is refused
// with 403 (counter-app applies it, for benchmarks), since it would make this replica differ from
// the others; and "value" must be an integer of at most 2^53 - 1 in magnitude (JSON.parse reads
// numbers as doubles), while the counter itself is an int64 that wraps around like counter-app's.
// It does not declare "pipelining": Node's parser reads a pipelined request while the ones before
// it are still being handled (their bodies arrive as events), and that the handlers then run in
// arrival order rests on Node's event scheduling, not on anything Node documents. So the proxy
// sends one entry at a time.
'use strict';
const http = require('http');

function option(name, fallback) {
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}` && i + 1 < args.length) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return fallback;
}
const host = option('host', process.env.HOST || '127.0.0.1');
const port = Number(option('port', process.env.PORT || '3000'));

const FNV_OFFSET = 0xcbf29ce484222325n;
const FNV_PRIME = 0x100000001b3n;
const fnv1a = (h, text) => {
  for (const byte of Buffer.from(text, 'utf8')) {
    h = BigInt.asUintN(64, (h ^ BigInt(byte)) * FNV_PRIME);
  }
  return h;
};
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// The replicated state. `value` is a BigInt, which JSON.stringify cannot write: the bodies that
// hold it are written by hand.
let value = 0n;
let journal = [];
let count = 0;
let hash = FNV_OFFSET;
let lastIndex = 0; // the Log-Index of the last replicated request applied
let violations = 0; // requests refused for a stale or malformed Log-Index

const reply = (status, body, headers = {}) => ({ status, body, headers });
const error = (status, message, extra = {}) =>
  reply(status, JSON.stringify({ error: message, ...extra }));
const hex = (h) => h.toString(16).padStart(16, '0');
const digest = () =>
  `{"count":${count},"hash":"${hex(hash)}",` +
  `"last_index":${lastIndex},"value":${value},"violations":${violations}}`;

// Keys in sorted order, as counter-app (nlohmann::json) writes them: same bytes, same hash.
function record(entry) {
  journal.push(entry);
  count++;
  hash = fnv1a(hash, JSON.stringify(entry) + '\n');
}

function handle(method, path, headers, body) {
  if (method === 'GET' && path === '/last-index') {
    return reply(200, JSON.stringify({ index: lastIndex, snapshots: true }));
  }
  if (path === '/snapshot') {
    if (method === 'GET') {
      const state =
        `{"count":${count},"hash":"${hex(hash)}",` +
        `"journal":${JSON.stringify(journal)},"value":${value}}`;
      return reply(200, state, { 'Log-Index': String(lastIndex) });
    }
    if (method === 'PUT') return restore(headers['log-index'], body);
    return error(405, 'GET or PUT /snapshot');
  }
  let index = 0; // 0: not replicated (a direct read)
  const header = headers['log-index'];
  if (header !== undefined) {
    const parsed = /^-?[0-9]+$/.test(header) ? Number(header) : NaN;
    if (!Number.isSafeInteger(parsed)) {
      violations++;
      return error(400, `invalid Log-Index header: '${header}'`);
    }
    if (parsed <= lastIndex) {
      violations++;
      return error(409, 'stale Log-Index', { index: parsed, last_index: lastIndex });
    }
    index = lastIndex = parsed; // every replicated request advances it, reads and errors included
  } else if (method !== 'GET' && method !== 'HEAD') {
    return error(403, 'a write needs a Log-Index header: send it through the proxy');
  }
  if (path === '/integer' && method === 'GET') return reply(200, `{"value":${value}}`);
  if (path === '/integer' && method === 'POST') return integerOp(body, index);
  if (path === '/integer/reset' && method === 'POST') {
    value = 0n;
    record({ index, op: 'RESET' });
    return reply(200, `{"index":${index},"value":0}`);
  }
  if (path === '/journal' && method === 'GET') {
    return reply(200, JSON.stringify({ entries: journal }));
  }
  if (path === '/journal' && method === 'POST') {
    let text;
    try {
      text = utf8.decode(body);
    } catch {
      return error(400, 'the body is not UTF-8 text');
    }
    record({ index, op: 'APPEND', text });
    return reply(200, JSON.stringify({ index, length: journal.length }));
  }
  if (path === '/journal/digest' && method === 'GET') return reply(200, digest());
  return error(404, 'no such endpoint');
}

function integerOp(body, index) {
  let doc;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch {}
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    return error(400, 'body is not a JSON object');
  }
  const { op } = doc;
  if (typeof op !== 'string') return error(400, "missing string field 'op'");
  if (!['INC', 'DEC', 'MUL', 'SET'].includes(op)) return error(400, `unknown op '${op}'`);
  let operand = 1; // INC and DEC default to 1; MUL and SET need a value
  if (!('value' in doc)) {
    if (op === 'MUL' || op === 'SET') return error(400, "missing integer field 'value'");
  } else if (Number.isSafeInteger(doc.value)) {
    operand = doc.value;
  } else {
    return error(400, "'value' must be an integer of at most 2^53 - 1 in magnitude");
  }
  const v = BigInt(operand);
  if (op === 'INC') value = BigInt.asIntN(64, value + v);
  else if (op === 'DEC') value = BigInt.asIntN(64, value - v);
  else if (op === 'MUL') value = BigInt.asIntN(64, value * v);
  else value = v;
  record({ index, op, value: operand });
  return reply(200, `{"index":${index},"value":${value}}`);
}

function restore(header, body) {
  const index = /^[0-9]+$/.test(header ?? '') ? Number(header) : NaN;
  if (!Number.isSafeInteger(index)) return error(400, 'PUT /snapshot needs a Log-Index header');
  const text = body.toString('utf8');
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {}
  const bad = () => error(400, 'not a counter snapshot');
  if (!doc || !Number.isInteger(doc.value) || !Array.isArray(doc.journal)) return bad();
  if (typeof doc.hash !== 'string' || !/^[0-9a-f]{16}$/.test(doc.hash)) return bad();
  if (!Number.isSafeInteger(doc.count) || doc.count < 0) return bad();
  // A value past 2^53 lost digits in JSON.parse: read it again from the text, where this app and
  // counter-app both write it last.
  let digits = String(doc.value);
  if (!Number.isSafeInteger(doc.value)) {
    const m = /"value":(-?[0-9]+)}\s*$/.exec(text);
    if (!m || Number(m[1]) !== doc.value) return bad();
    digits = m[1];
  }
  const restored = BigInt(digits);
  if (BigInt.asIntN(64, restored) !== restored) return bad();
  value = restored;
  journal = doc.journal;
  hash = BigInt('0x' + doc.hash);
  count = doc.count;
  lastIndex = index;
  return reply(200, JSON.stringify({ index }));
}

// Node answers a request whose head is over 16 KiB with 431 itself, before the handler could
// record its Log-Index; the proxy passes heads up to its --header-limit (64 KiB, at most 1 MiB).
const server = http.createServer({ maxHeaderSize: 1 << 21 }, (req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const path = req.url.split('?')[0];
    const r = handle(req.method, path, req.headers, Buffer.concat(chunks));
    res.writeHead(r.status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(r.body),
      ...r.headers,
    });
    res.end(r.body);
  });
});
// Node's parser refuses a request it cannot parse, above all a method it does not know (400,
// "Invalid method"), and closes the connection before any handler runs. The proxy forwards any
// method: such an entry was applied all the same and its index must count, else the proxy,
// reconnecting, finds /last-index behind and sends it again, and again, and the replica never
// gets past it. So the index is read from the raw head, when the packet holds it whole (the
// proxy writes its Log-Index last in the head).
server.on('clientError', (err, socket) => {
  const raw = err.rawPacket ? err.rawPacket.toString('latin1') : '';
  const start = raw.lastIndexOf('\n', (err.bytesParsed || 1) - 1) + 1; // the line it failed on
  const end = raw.indexOf('\r\n\r\n', start);
  const head = end < 0 ? '' : raw.slice(start, end + 2);
  const m = /(?:^|\r\n)log-index:[ \t]*([0-9]+)[ \t]*\r\n/i.exec(head);
  const index = m ? Number(m[1]) : NaN;
  if (Number.isSafeInteger(index) && index > lastIndex) lastIndex = index;
  else if (m) violations++;
  if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  else socket.destroy();
});
// The proxy keeps its connection open between entries; closing it when idle (Node's default, after
// 5 s) races with the proxy's next entry and costs a reconnection and a /last-index check.
server.keepAliveTimeout = 0;
server.listen(port, host, () => console.error(`node-counter listening on ${host}:${port}`));
