// A second client tool for the side-by-side benchmarks (the first is the
// Go benchmarks' paho.golang): MQTT.js over mTLS against a running broker
// or gateway.
//
//   node bench.mjs connect URL CA CERT KEY N        N sequential connects
//   node bench.mjs publish URL CA CERT KEY N TOPIC  N QoS 1 publishes, 16 in flight
//
// It prints one line: "<mode> <n> <seconds> <rate>/s". Point it at
// loopback only.
import mqtt from "mqtt";
import { readFileSync } from "node:fs";

const [mode, url, ca, cert, key, nArg, topic] = process.argv.slice(2);
const n = Number(nArg);
const tls = { ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), servername: "localhost", rejectUnauthorized: true };
const opts = { ...tls, protocolVersion: 5, clean: true, reconnectPeriod: 0, connectTimeout: 10000, keepalive: 60 };

function connect(id) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { ...opts, clientId: id });
    c.once("connect", () => resolve(c));
    c.once("error", (e) => { c.end(true); reject(e); });
  });
}

async function main() {
  const start = process.hrtime.bigint();
  if (mode === "connect") {
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
