// Receiving gateway-recon's order events in JavaScript (Node 18+), with nothing but node:crypto.
// The Standard Webhooks signature: base64(HMAC-SHA256(key, `${id}.${timestamp}.${body}`)), where key is the
// base64 part of the secret after "whsec_"; the header lists "v1,<signature>" entries separated by spaces.
//
//   RECON_EVENT_SECRET=whsec_... WEBHOOK_ID=... WEBHOOK_TIMESTAMP=... WEBHOOK_SIGNATURE=... node verify_order_event.mjs < body.json
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";

export function verify(body, headers, secret, nowSeconds = Math.floor(Date.now() / 1000)) {
  const id = headers["webhook-id"], timestamp = headers["webhook-timestamp"], signatures = headers["webhook-signature"];
  if (!id || !timestamp || !signatures) throw new Error("missing webhook headers");
  if (Math.abs(nowSeconds - Number(timestamp)) > 300) throw new Error("timestamp outside 5 minutes");
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest();
  const good = signatures.split(" ").some((entry) => {
    const [version, signature] = entry.split(",");
    const given = Buffer.from(signature ?? "", "base64");
    return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!good) throw new Error("no matching signature");
  return JSON.parse(body); // verify the raw body as received, then parse
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const body = readFileSync(0, "utf8");
  const headers = { "webhook-id": process.env.WEBHOOK_ID, "webhook-timestamp": process.env.WEBHOOK_TIMESTAMP,
                    "webhook-signature": process.env.WEBHOOK_SIGNATURE };
  try {
    const event = verify(body, headers, process.env.RECON_EVENT_SECRET);
    // At least once: skip a webhook-id seen before; data.sequence orders one order's events.
    console.log(event.type, event.data.order.id, event.data.sequence);
  } catch (error) {
    console.error(`refused: ${error.message}`);
    process.exit(1);
  }
}
