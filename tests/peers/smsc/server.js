// Loopback SMPP v3.4 SMSC for the tests and the demo: node-smpp (npm `smpp`, MIT) in server mode.
//
// Usage: node server.js [--port N] [--control-port N] [--host 127.0.0.1] [--system-id ID] [--password PW]
//                       [--receipt-delay-ms N] [--receipt-state DELIVRD] [--record FILE]
//                       [--record-mode full|counts] [--first-message-id N]
// Every option may also come from the environment (SMSC_PORT, SMSC_CONTROL_PORT, SMSC_SYSTEM_ID, ...).
// Port 0 picks a free port. Once both listeners are up it prints one line on stdout:
//   {"smpp_port": 41234, "control_port": 41235}
//
// Control endpoint (HTTP on the loopback):
//   GET  /received[?command=submit_sm]  every PDU received, oldest first (JSON array); [] in counts mode
//   GET  /state                         bound sessions, faults in force, counters (submits, distinct_destinations,
//                                       receipts_sent, receipts_acked, receipts_requeued, binds, drops)
//   POST /faults   JSON object, merged into the faults in force:
//        throttle_count N, throttle_status 0x58|0x14  answer the next N submit_sm with that status
//        response_delay_ms D                           delay every response by D ms
//        drop_now true                                  destroy every connection now
//        drop_after_submits N                           destroy the connection on the Nth submit_sm (unanswered)
//        receipt_state "UNDELIV"|"DELIVRD"|...          final state of later receipts
//        receipt_delay_ms D                             send receipts D ms after the submit (late receipts)
//        receipt_tlvs false                             receipts carry only the text (no TLVs)
//        ignore_enquire_link true                       stop answering enquire_link
//        receipts_on "submitter"|"first"                a receipt goes back on the session its message came
//                                                       on (the default, while that session is bound), or on
//                                                       the first bound session of the system_id
//   POST /mo       JSON {"source", "text", "destination"?, "data_coding"? 8|0, "udh_hex"?}: a mobile-originated
//                  deliver_sm (esm_class 0, UCS2 by default) on the first bound session; until the ESME answers
//                  it ESME_ROK it is sent again every mo_retry_ms (default 200; a refusal such as ESME_RX_T_APPN
//                  or a session that ends), as SMSCs do. Answers {"queued": true}. Counters mo_sent, mo_acked,
//                  mo_refused.
//   POST /reset    clear faults, records and counters
// Receipts whose session has gone are kept and sent on the next bind of the same system_id, as SMSCs do; so are
// receipts sent and never answered with deliver_sm_resp when their session closes or the peer vanishes.
// Record mode "counts" (for benchmarks) keeps no per-PDU records, only the counters: memory stays flat.
"use strict";

const http = require("http");
const fs = require("fs");
const smpp = require("smpp");

// Keep short_message and message_payload as raw octets so the record shows exactly what arrived.
for (const name of ["submit_sm", "deliver_sm", "data_sm"]) {
  const params = smpp.commands[name].params || {};
  if (params.short_message) delete params.short_message.filter;
}
delete smpp.tlvs.message_payload.filter;

function option(name, fallback) {
  const flag = "--" + name;
  const i = process.argv.indexOf(flag);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  const env = "SMSC_" + name.toUpperCase().replace(/-/g, "_");
  return process.env[env] !== undefined ? process.env[env] : fallback;
}

const HOST = option("host", "127.0.0.1");
const SMPP_PORT = parseInt(option("port", "0"), 10);
const CONTROL_PORT = parseInt(option("control-port", "0"), 10);
const SYSTEM_ID = option("system-id", "wuhai");
const PASSWORD = option("password", "secret");
const RECORD_FILE = option("record", "");
const RECORD_MODE = option("record-mode", "full");
// A peer restarted in a test starts its message_ids above its predecessor's, as a real SMSC's never repeat.
const FIRST_MESSAGE_ID = parseInt(option("first-message-id", "1"), 10);
if (!["full", "counts"].includes(RECORD_MODE)) {
  process.stderr.write(`--record-mode must be full or counts, not ${RECORD_MODE}\n`);
  process.exit(2);
}

const STATES = { ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8 };

function defaultFaults() {
  return {
    throttle_count: 0,
    throttle_status: 0x58,
    response_delay_ms: 0,
    drop_after_submits: 0,
    receipt_state: option("receipt-state", "DELIVRD"),
    receipt_delay_ms: parseInt(option("receipt-delay-ms", "50"), 10),
    receipt_tlvs: true,
    ignore_enquire_link: false,
    receipts_on: "submitter",
    mo_retry_ms: 200,
  };
}

let faults = defaultFaults();
let records = [];
function freshCounters() {
  return {
    submits: 0,
    receipts_sent: 0,
    receipts_acked: 0,
    receipts_requeued: 0,
    binds: 0,
    drops: 0,
    mo_sent: 0,
    mo_acked: 0,
    mo_refused: 0,
  };
}

let counters = freshCounters();
const destinations = new Set(); // destination_addr of every accepted submit_sm, in both record modes
let nextMessageId = FIRST_MESSAGE_ID;
const pendingReceipts = new Map(); // system_id -> [receipt options] waiting for a bound session
// Written synchronously, line by line: a test may SIGKILL the peer (an SMSC crash) and must still read every
// record made before the kill (a write stream would lose what it had buffered).
const recordFd = RECORD_FILE ? fs.openSync(RECORD_FILE, "a") : null;

function record(entry) {
  if (RECORD_MODE === "counts") return;
  entry.at = Date.now() / 1000;
  records.push(entry);
  if (recordFd !== null) fs.writeSync(recordFd, JSON.stringify(entry) + "\n");
}

function hex(buffer) {
  return Buffer.isBuffer(buffer) ? buffer.toString("hex") : "";
}

function decodeText(octets, dataCoding) {
  if (!Buffer.isBuffer(octets)) return "";
  if ((dataCoding & 0x0f) === 0x08) {
    const swapped = Buffer.from(octets.subarray(0, octets.length - (octets.length % 2)));
    swapped.swap16();
    return swapped.toString("utf16le");
  }
  return octets.toString("latin1");
}

function submitRecord(pdu) {
  const raw = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
  let udh = null;
  let body = raw;
  if (pdu.esm_class & 0x40 && raw.length > 0) {
    udh = raw.subarray(0, raw[0] + 1);
    body = raw.subarray(raw[0] + 1);
  }
  const payload = Buffer.isBuffer(pdu.message_payload) ? pdu.message_payload : null;
  return {
    command: "submit_sm",
    sequence_number: pdu.sequence_number,
    source_addr: pdu.source_addr,
    destination_addr: pdu.destination_addr,
    esm_class: pdu.esm_class,
    data_coding: pdu.data_coding,
    registered_delivery: pdu.registered_delivery,
    short_message_hex: hex(raw),
    udh_hex: udh ? hex(udh) : null,
    text: decodeText(payload || body, pdu.data_coding),
    sar_msg_ref_num: pdu.sar_msg_ref_num === undefined ? null : pdu.sar_msg_ref_num,
    sar_total_segments: pdu.sar_total_segments === undefined ? null : pdu.sar_total_segments,
    sar_segment_seqnum: pdu.sar_segment_seqnum === undefined ? null : pdu.sar_segment_seqnum,
    message_payload_hex: payload ? hex(payload) : null,
  };
}

function smppDate(date) {
  const p = (n) => String(n).padStart(2, "0");
  return p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate()) + p(date.getUTCHours()) + p(date.getUTCMinutes());
}

function receiptFor(pdu, messageId, submittedAt) {
  const state = faults.receipt_state in STATES ? faults.receipt_state : "UNKNOWN";
  const delivered = state === "DELIVRD" ? "001" : "000";
  const err = state === "DELIVRD" ? "000" : "001";
  const text =
    `id:${messageId} sub:001 dlvrd:${delivered} submit date:${smppDate(submittedAt)} ` +
    `done date:${smppDate(new Date())} stat:${state} err:${err} text:`;
  const options = {
    source_addr: pdu.destination_addr,
    destination_addr: pdu.source_addr,
    esm_class: 0x04,
    data_coding: 0,
    short_message: Buffer.from(text, "latin1"),
  };
  if (faults.receipt_tlvs) {
    options.receipted_message_id = messageId;
    options.message_state = STATES[state];
  }
  return options;
}

function keepForNextBind(options) {
  if (!pendingReceipts.has(options.system_id)) pendingReceipts.set(options.system_id, []);
  pendingReceipts.get(options.system_id).push(options);
}

function canTake(session, systemId) {
  return session.bound_system_id === systemId && session.socket.writable;
}

// Send a receipt on the session its message was submitted on while that one is bound (or on the first bound
// session of its system_id, when `receipts_on` says "first" or the submitter's session has gone), or keep it for
// the next bind when there is none. Until the ESME answers it, the receipt stays in the session's unacked map,
// so a session that ends takes none along.
function sendReceipt(options, submitter) {
  const own = faults.receipts_on !== "first" && submitter && canTake(submitter, options.system_id);
  const target = own ? submitter : server.sessions.find((s) => canTake(s, options.system_id));
  if (!target) return keepForNextBind(options);
  const { system_id, ...fields } = options;
  const pdu = new smpp.PDU("deliver_sm", fields);
  const sent = target.send(pdu, (resp) => {
    target.unacked.delete(pdu.sequence_number);
    if (resp.command_status === 0) counters.receipts_acked += 1;
  });
  if (!sent) return keepForNextBind(options);
  target.unacked.set(pdu.sequence_number, options);
  counters.receipts_sent += 1;
}

// A message from a phone: sent on the first bound session, and again after mo_retry_ms until answered ESME_ROK
// (kept for the next bind when no session is bound).
let moGeneration = 0; // a reset forgets the messages from phones still being sent

function sendMo(options) {
  if (options.generation !== moGeneration) return;
  const target = server.sessions.find((s) => canTake(s, options.system_id));
  const retry = () => setTimeout(() => sendMo(options), faults.mo_retry_ms);
  if (!target) return retry();
  const { system_id, generation, ...fields } = options;
  const pdu = new smpp.PDU("deliver_sm", fields);
  let answered = false;
  const sent = target.send(pdu, (resp) => {
    answered = true;
    if (resp.command_status === 0) {
      counters.mo_acked += 1;
    } else {
      counters.mo_refused += 1;
      retry();
    }
  });
  counters.mo_sent += 1;
  if (!sent) return retry();
  // a session that ends with it unanswered: send it again, on whichever session is bound then
  target.once("close", () => {
    if (!answered) retry();
  });
}

function moOptions(change) {
  if (typeof change.source !== "string" || typeof change.text !== "string") {
    throw new Error("source and text are required strings");
  }
  const dataCoding = change.data_coding === undefined ? 8 : change.data_coding;
  let octets;
  if (dataCoding === 8) {
    octets = Buffer.from(change.text, "utf16le");
    octets.swap16();
  } else {
    octets = Buffer.from(change.text, "latin1");
  }
  let esmClass = 0;
  if (change.udh_hex) {
    octets = Buffer.concat([Buffer.from(change.udh_hex, "hex"), octets]);
    esmClass = 0x40;
  }
  return {
    system_id: SYSTEM_ID,
    generation: moGeneration,
    source_addr: change.source,
    destination_addr: change.destination || "12121",
    esm_class: esmClass,
    data_coding: dataCoding,
    short_message: octets,
  };
}

// A session that ended (unbind, drop, vanished peer) never answered these: send them again, as SMSCs do.
function requeueUnacked(session) {
  const unacked = [...session.unacked.values()];
  session.unacked.clear();
  counters.receipts_requeued += unacked.length;
  for (const options of unacked) sendReceipt(options);
}

const server = smpp.createServer((session) => {
  let systemId = null;
  let submitsOnSession = 0;
  session.unacked = new Map(); // sequence_number -> receipt sent on this session and not yet answered
  session.on("error", () => {}); // a peer that vanishes is a scripted fault, not a crash
  session.on("close", () => requeueUnacked(session));

  const respond = (pdu, options) => {
    const send = () => session.send(pdu.response(options || {}));
    if (faults.response_delay_ms > 0) setTimeout(send, faults.response_delay_ms);
    else send();
  };

  const bind = (pdu) => {
    record({ command: pdu.command, system_id: pdu.system_id });
    if (pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      return;
    }
    systemId = pdu.system_id;
    session.bound_system_id = systemId;
    counters.binds += 1;
    session.send(pdu.response({ system_id: "wuhai-test-smsc" }));
    const waiting = pendingReceipts.get(systemId) || [];
    pendingReceipts.delete(systemId);
    for (const receipt of waiting) setImmediate(() => sendReceipt(receipt));
  };
  session.on("bind_transceiver", bind);
  session.on("bind_transmitter", bind);
  session.on("bind_receiver", bind);

  session.on("submit_sm", (pdu) => {
    // in counts mode nothing is kept: the record's hex and decoded text would be built only to be thrown away
    const entry = RECORD_MODE === "counts" ? {} : submitRecord(pdu);
    if (!systemId) {
      entry.outcome = "not bound";
      record(entry);
      session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
      return;
    }
    submitsOnSession += 1;
    if (faults.drop_after_submits > 0 && submitsOnSession >= faults.drop_after_submits) {
      faults.drop_after_submits = 0;
      counters.drops += 1;
      entry.outcome = "dropped";
      record(entry);
      session.destroy();
      return;
    }
    if (faults.throttle_count > 0) {
      faults.throttle_count -= 1;
      entry.outcome = "throttled";
      entry.command_status = faults.throttle_status;
      record(entry);
      respond(pdu, { command_status: faults.throttle_status });
      return;
    }
    const messageId = (nextMessageId++).toString(16).padStart(8, "0");
    counters.submits += 1;
    destinations.add(pdu.destination_addr);
    entry.outcome = "accepted";
    entry.message_id = messageId;
    record(entry);
    respond(pdu, { message_id: messageId });
    if (pdu.registered_delivery & 0x01) {
      const receipt = receiptFor(pdu, messageId, new Date());
      receipt.system_id = systemId;
      setTimeout(() => sendReceipt(receipt, session), faults.receipt_delay_ms);
    }
  });

  session.on("enquire_link", (pdu) => {
    record({ command: "enquire_link" });
    if (!faults.ignore_enquire_link) respond(pdu);
  });
  session.on("unbind", (pdu) => {
    record({ command: "unbind", system_id: systemId });
    session.send(pdu.response());
    session.bound_system_id = null;
    systemId = null;
    setTimeout(() => session.close(), 10);
  });
  session.on("deliver_sm_resp", (pdu) => {
    record({ command: "deliver_sm_resp", command_status: pdu.command_status });
  });
  session.on("unknown", (pdu) => {
    record({ command: "unknown", command_id: pdu.command_id });
    session.send(pdu.response());
  });
});

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = "";
    req.on("data", (chunk) => (data += chunk));
    req.on("end", () => resolve(data));
    req.on("error", reject);
  });
}

const control = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  const reply = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  try {
    if (req.method === "GET" && url.pathname === "/received") {
      const command = url.searchParams.get("command");
      return reply(200, command ? records.filter((r) => r.command === command) : records);
    }
    if (req.method === "GET" && url.pathname === "/state") {
      const bound = server.sessions.filter((s) => s.bound_system_id).length;
      let pending = 0;
      for (const list of pendingReceipts.values()) pending += list.length;
      const all = { ...counters, distinct_destinations: destinations.size };
      return reply(200, { bound_sessions: bound, faults, counters: all, pending_receipts: pending });
    }
    if (req.method === "POST" && url.pathname === "/faults") {
      const change = JSON.parse((await readBody(req)) || "{}");
      if (change.drop_now) {
        counters.drops += server.sessions.length;
        for (const s of [...server.sessions]) s.destroy();
        delete change.drop_now;
      }
      faults = { ...faults, ...change };
      return reply(200, faults);
    }
    if (req.method === "POST" && url.pathname === "/mo") {
      sendMo(moOptions(JSON.parse((await readBody(req)) || "{}")));
      return reply(200, { queued: true });
    }
    if (req.method === "POST" && url.pathname === "/reset") {
      faults = defaultFaults();
      moGeneration += 1;
      records = [];
      counters = freshCounters();
      destinations.clear();
      pendingReceipts.clear();
      for (const s of server.sessions) s.unacked.clear();
      return reply(200, faults);
    }
    reply(404, { error: "no such endpoint" });
  } catch (e) {
    reply(400, { error: String(e) });
  }
});

server.listen(SMPP_PORT, HOST, () => {
  control.listen(CONTROL_PORT, HOST, () => {
    process.stdout.write(JSON.stringify({ smpp_port: server.address().port, control_port: control.address().port }) + "\n");
  });
});

const stop = () => {
  for (const s of [...server.sessions]) s.destroy();
  server.close();
  control.close();
  if (recordFd !== null) fs.closeSync(recordFd);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
