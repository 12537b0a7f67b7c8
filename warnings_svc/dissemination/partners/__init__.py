"""Departments and partners: the registry of departments and their duty chains, partners' subscriptions and
their deliveries (webhook, email, MQTT topic, SMS), acknowledgement deadlines for high-level warnings (叫应)
with escalation, messages received from phones, and relayers' reports (再传播).

Modules:

- `states`: a partner delivery's states, one transition table;
- `outbox`: the partner deliveries an issued version causes (written in its transaction), claiming, results,
  the delivery log and "send again";
- `subscriptions`: partners' subscriptions (checked, stored, matched against a version);
- `dispatch`: the partner dispatcher (webhooks, email, MQTT, SMS) with retries on the schedule;
- `registry`: departments and their duty chains, imported from CSV;
- `acknowledgements`: who owes an acknowledgement for a warning, the deadlines and the escalation;
- `inbound`: messages from phones (replies to acknowledgement calls, relayers' reports).
"""
