// A second client tool for the side-by-side benchmarks (the first is the
// Go benchmarks' paho.golang): MQTT.js over mTLS against a running broker
// or gateway.
//
//   node bench.mjs connect URL CA CERT KEY N        N sequential connects
//   node bench.mjs resume URL CA CERT KEY N         one full handshake, then N
//                                                   sequential connects that
//                                                   resume its TLS session
//   node bench.mjs publish URL CA CERT KEY N TOPIC  N QoS 1 publishes, 16 in flight
//
// It prints one line: "<mode> <n> <seconds> <rate>/s" (resume: the N
// resumed connects only; every one must resume, as the TLS socket's
// isSessionReused() says, or it fails). Node's TLS keeps the session
// ticket the server sends (the "session" event) and offers it with the
// next connect (tls.connect's session option, which MQTT.js passes on).
// Sockets are TCP_NODELAY, as Go's are by default (Node's are not: with
// Nagle, the CONNECT written after the TLS Finished can wait for the
// server's delayed ACK, which measures timers, not the server).
// Point it at loopback only.
import mqtt from "mqtt";
import { readFileSync } from "node:fs";

const [mode, url, ca, cert, key, nArg, topic] = process.argv.slice(2);
const n = Number(nArg);
const tls = { ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), servername: "localhost", rejectUnauthorized: true };
const opts = { ...tls, noDelay: true, protocolVersion: 5, clean: true, reconnectPeriod: 0, connectTimeout: 10000, keepalive: 60 };

function connect(id, extra = {}) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...opts, ...extra, clientId: id });
    c.once("connect", () => resolve(c));
    c.once("error", (e) => { c.end(true); reject(e); });
  });
}

// connectResumable connects offering session (a previous session ticket,
// or undefined) and resolves with the client, whether the TLS session was
// resumed, and the newest ticket the server sent on this connection.
function connectResumable(id, session) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...opts, clientId: id, session });
    let ticket;
    const waiters = [];
    c.stream.on("session", (s) => { ticket = s; waiters.splice(0).forEach((w) => w()); });
    c.once("connect", () => {
      const reused = c.stream.isSessionReused();
      // A TLS 1.3 server sends its ticket after the handshake: wait for it
      // (briefly) before the connection ends.
      if (ticket) return resolve({ c, reused, ticket });
      const t = setTimeout(() => reject(new Error("no session ticket from the server")), 2000);
      waiters.push(() => { clearTimeout(t); resolve({ c, reused, ticket }); });
    });
    c.once("error", (e) => { c.end(true); reject(e); });
  });
}

async function main() {
  let start = process.hrtime.bigint();
  if (mode === "resume") {
    const first = await connectResumable(`bench-${process.pid}-full`, undefined);
    if (first.reused) throw new Error("the first connect resumed a session");
    await first.c.endAsync(true);
    let session = first.ticket;
    start = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const r = await connectResumable(`bench-${process.pid}-${i}`, session);
      await r.c.endAsync(true);
      if (!r.reused) throw new Error(`connect ${i} did not resume its TLS session`);
      session = r.ticket;
    }
  } else if (mode === "connect") {
    for (let i = 0; i < n; i++) {
      const c = await connect(`bench-${process.pid}-${i}`);
      await c.endAsync(true);
    }
  } else if (mode === "publish") {
    const c = await connect(`bench-pub-${process.pid}`);
    let sent = 0, done = 0;
    await new Promise((resolve, reject) => {
      const pump = () => {
        while (sent < n && sent - done < 16) {
          sent++;
          c.publish(topic, "x".repeat(32), { qos: 1 }, (err, pk) => {
            if (err) return reject(err);
            if (pk && pk.reasonCode && pk.reasonCode >= 0x80) return reject(new Error(`PUBACK 0x${pk.reasonCode.toString(16)}`));
            done++;
            if (done === n) resolve();
            else pump();
          });
        }
      };
      pump();
    });
    await c.endAsync();
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(`${mode} ${n} ${secs.toFixed(3)} ${(n / secs).toFixed(1)}/s`);
}

main().then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });
