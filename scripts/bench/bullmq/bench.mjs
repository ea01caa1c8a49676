// BullMQ side of scripts/bench_reminders.sh: the same reminders, due at the same instants, as
// BullMQ delayed jobs on the same Redis, each doing careloop's dispatch work against the same
// PostgreSQL schema (a database seeded by `bench_due seed`).
//
//   node bench.mjs --db URL --redis URL --prefix P --count N [--concurrency C] [--processes K]
//                  [--lead-ms L] [--timeout-s T]
//
// The main process arms the seeded occurrences (the same UPDATE as careloop's side) to start L ms
// from now, adds one delayed job per occurrence (jobId = occurrence id, delay = due - now), forks
// K worker processes with C/K concurrency each (so BullMQ may use every core, as careloop's
// multi-threaded runtime does), and waits until every occurrence is `sent`.
//
// The work per job is what careloop's `dispatch` does, written the way a careful Node developer
// would (one joined read, one write transaction), so this side makes fewer round trips than
// careloop's repository calls:
//   read   the occurrence (state), its schedule (medicine, dose, channels), its patient (consent,
//          language, channel opt-outs, Telegram identity) and the newest approved `reminder`
//          template in the patient's language;
//   write  in one transaction: the patient's conversation on the channel (found or created), one
//          `queued` outbound message with idempotency key `reminder:<occurrence key>` (ON CONFLICT
//          DO NOTHING: a repeated job makes no second message), the conversation's
//          last_message_at, the occurrence `sent` with its message id (only from planned or
//          dispatching), and one audit row.
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';
import pg from 'pg';

const ARM_SQL = `UPDATE reminder_occurrences
  SET due_at = to_timestamp($1::double precision / 1000) + (due_at - TIMESTAMPTZ '2100-01-01T00:00:00Z')
  WHERE state = 'planned' AND due_at >= TIMESTAMPTZ '2100-01-01T00:00:00Z'`;

const READ_SQL = `SELECT o.state, o.idempotency_key, o.patient_id,
    s.medicine_name, s.dose_text, s.channels,
    p.language, p.consent_state,
    ARRAY(SELECT channel FROM patient_channel_opt_outs x
          WHERE x.organization_id = o.organization_id AND x.patient_id = p.id) AS opted_out,
    ARRAY(SELECT DISTINCT channel FROM channel_identities i
          WHERE i.organization_id = o.organization_id AND i.patient_id = p.id) AS linked,
    t.id AS template_version_id, t.body AS template_body
  FROM reminder_occurrences o
  JOIN medication_schedules s ON s.id = o.schedule_id AND s.organization_id = o.organization_id
  JOIN patients p ON p.id = o.patient_id AND p.organization_id = o.organization_id
  LEFT JOIN LATERAL (
    SELECT v.id, v.body FROM content_items c
    JOIN content_versions v ON v.content_item_id = c.id AND v.review_state = 'approved'
    WHERE c.organization_id = o.organization_id AND c.key = 'reminder' AND c.condition_code = ''
      AND c.language = p.language AND c.reading_level = 'easy'
    ORDER BY v.version DESC LIMIT 1) t ON true
  WHERE o.id = $1 AND o.organization_id = $2`;

const BUTTONS = {
  en: ['Taken', 'Skip', 'Snooze 30 min'],
  es: ['Tomado', 'Omitir', 'Recordar en 30 min'],
  fr: ['Pris', 'Sauter', 'Rappel dans 30 min'],
  de: ['Genommen', 'Auslassen', 'In 30 Min. erinnern'],
  pt: ['Tomei', 'Pular', 'Lembrar em 30 min'],
  ar: ['أخذت', 'تخطي', 'ذكرني بعد 30 دقيقة'],
};

function args() {
  const a = process.argv.slice(2);
  const get = (name, dflt) => {
    const i = a.indexOf(name);
    return i >= 0 ? a[i + 1] : dflt;
  };
  return {
    worker: a.includes('--worker'),
    db: get('--db'),
    redis: get('--redis', 'redis://127.0.0.1:6379/0'),
    prefix: get('--prefix', 'bench_bull'),
    count: Number(get('--count', '100000')),
    concurrency: Number(get('--concurrency', '32')),
    processes: Number(get('--processes', '2')),
    leadMs: Number(get('--lead-ms', '30000')),
    timeoutS: Number(get('--timeout-s', '600')),
  };
}

const QUEUE = 'reminder_due';

async function settle(c, org, id, from, to, reason) {
  const now = new Date();
  const moved = await c.query(
    `UPDATE reminder_occurrences SET state = $1, updated_at = $2
     WHERE id = $3 AND organization_id = $4 AND state = $5`,
    [to, now, id, org, from],
  );
  if (moved.rowCount === 1) {
    await c.query(
      `INSERT INTO audit_log (id, organization_id, actor, action, entity_type, entity_id, details, created_at)
       VALUES ($1, $2, 'system', $3, 'reminder_occurrence', $4, $5, $6)`,
      [randomUUID(), org, `reminder.${to}`, id, JSON.stringify({ reason }), now],
    );
  }
}

// careloop's dispatch, see the header.
async function dispatch(pool, { organization_id: org, occurrence_id: id }) {
  const c = await pool.connect();
  try {
    const { rows } = await c.query(READ_SQL, [id, org]);
    const o = rows[0];
    if (!o) return 'gone';
    if (o.state !== 'planned' && o.state !== 'dispatching') return 'already handled';
    if (o.consent_state !== 'granted') {
      await settle(c, org, id, o.state, 'cancelled', 'patient has not consented or opted out');
      return 'cancelled';
    }
    const channel = o.channels.find((ch) => !o.opted_out.includes(ch) && o.linked.includes(ch));
    if (!channel || !o.template_body) {
      await settle(c, org, id, o.state, 'failed', channel ? 'no approved reminder template' : 'no reachable channel');
      return 'failed';
    }
    const body = o.template_body.trim().replaceAll('{medicine}', o.medicine_name).replaceAll('{dose}', o.dose_text);
    const labels = BUTTONS[o.language] ?? BUTTONS.en;
    const meta = {
      purpose: 'reminder',
      buttons: labels.map((label, k) => ({ label, action: `reminder:${id}:${['taken', 'skip', 'snooze'][k]}` })),
    };
    const provenance = {
      content_version_ids: [o.template_version_id],
      model_id: null,
      prompt_version: null,
      checks: { stage: 'reminder', template: 'reminder', occurrence_id: id },
    };
    const now = new Date();
    await c.query('BEGIN');
    try {
      let conv = (
        await c.query(
          `SELECT id FROM conversations WHERE organization_id = $1 AND patient_id = $2 AND channel = $3
           ORDER BY last_message_at DESC, id DESC LIMIT 1`,
          [org, o.patient_id, channel],
        )
      ).rows[0]?.id;
      if (!conv) {
        conv = randomUUID();
        await c.query(
          `INSERT INTO conversations (id, organization_id, patient_id, channel, started_at, last_message_at)
           VALUES ($1, $2, $3, $4, $5, $5)`,
          [conv, org, o.patient_id, channel, now],
        );
      }
      const key = `reminder:${o.idempotency_key}`;
      let message = (
        await c.query(
          `INSERT INTO messages (id, organization_id, conversation_id, patient_id, direction, channel, status,
             body, language, idempotency_key, provenance, created_at, updated_at, attempts, delivery_meta)
           VALUES ($1, $2, $3, $4, 'outbound', $5, 'queued', $6, $7, $8, $9, $10, $10, 0, $11)
           ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`,
          [randomUUID(), org, conv, o.patient_id, channel, body, o.language, key, JSON.stringify(provenance), now, JSON.stringify(meta)],
        )
      ).rows[0]?.id;
      if (message) {
        await c.query('UPDATE conversations SET last_message_at = $1 WHERE id = $2', [now, conv]);
      } else {
        message = (await c.query('SELECT id FROM messages WHERE idempotency_key = $1', [key])).rows[0].id;
      }
      const done = new Date();
      const moved = await c.query(
        `UPDATE reminder_occurrences SET state = 'sent', message_id = $1, updated_at = $2
         WHERE id = $3 AND organization_id = $4 AND state = $5`,
        [message, done, id, org, o.state],
      );
      if (moved.rowCount === 1) {
        await c.query(
          `INSERT INTO audit_log (id, organization_id, actor, action, entity_type, entity_id, details, created_at)
           VALUES ($1, $2, 'system', 'reminder.sent', 'reminder_occurrence', $3, $4, $5)`,
          [randomUUID(), org, id, JSON.stringify({ reason: 'queued' }), done],
        );
      }
      await c.query('COMMIT');
      return moved.rowCount === 1 ? 'queued' : 'already handled';
    } catch (e) {
      await c.query('ROLLBACK');
      throw e;
    }
  } finally {
    c.release();
  }
}

function redis(url) {
  return new IORedis(url, { maxRetriesPerRequest: null });
}

async function runWorker(o) {
  const pool = new pg.Pool({ connectionString: o.db, max: 10 });
  const connection = redis(o.redis);
  const worker = new Worker(QUEUE, (job) => dispatch(pool, job.data), {
    connection,
    prefix: o.prefix,
    concurrency: o.concurrency,
  });
  worker.on('failed', (job, err) => console.error(`bullmq: job ${job?.id} failed: ${err.message}`));
  await worker.waitUntilReady();
  process.send?.('ready');
  process.on('message', async (m) => {
    if (m === 'stop') {
      await worker.close();
      await pool.end();
      connection.disconnect();
      process.exit(0);
    }
  });
}

async function main() {
  const o = args();
  if (o.worker) return runWorker(o);
  const pool = new pg.Pool({ connectionString: o.db, max: 2 });
  const connection = redis(o.redis);
  const queue = new Queue(QUEUE, { connection, prefix: o.prefix });

  // Workers first (idle until the first job is due), as careloop's worker is started first.
  const children = [];
  const per = Math.max(1, Math.round(o.concurrency / o.processes));
  for (let k = 0; k < o.processes; k++) {
    const child = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2), '--worker', '--concurrency', String(per)]);
    await new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
    });
    children.push(child);
  }

  const t0 = Date.now() + o.leadMs;
  const armed = await pool.query(ARM_SQL, [t0]);
  if (armed.rowCount !== o.count) throw new Error(`armed ${armed.rowCount}, expected ${o.count}`);
  const { rows } = await pool.query(
    `SELECT id, organization_id, (EXTRACT(EPOCH FROM due_at) * 1000)::double precision AS due_ms
     FROM reminder_occurrences WHERE state = 'planned' ORDER BY due_at`,
  );
  for (let i = 0; i < rows.length; i += 1000) {
    const now = Date.now();
    await queue.addBulk(
      rows.slice(i, i + 1000).map((r) => ({
        name: 'reminder_due',
        data: { organization_id: r.organization_id, occurrence_id: r.id },
        opts: { jobId: r.id, delay: Math.max(0, Math.round(r.due_ms - now)) },
      })),
    );
  }
  const added = Date.now();
  if (added > t0) {
    throw new Error(`adding the jobs took until ${added - t0} ms after the first was due: raise --lead-ms`);
  }
  console.error(`bullmq: ${rows.length} delayed jobs added, ${t0 - added} ms before the first is due`);

  const deadline = Date.now() + o.timeoutS * 1000;
  let last = 0;
  for (;;) {
    const n = Number((await pool.query(`SELECT COUNT(*) AS n FROM reminder_occurrences WHERE state = 'sent'`)).rows[0].n);
    if (n >= o.count) break;
    if (Date.now() > deadline) throw new Error(`only ${n} of ${o.count} sent within ${o.timeoutS} s`);
    if (Math.floor(n / 10000) !== Math.floor(last / 10000)) console.error(`bullmq: ${n} sent`);
    last = n;
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const child of children) child.send('stop');
  await Promise.all(children.map((c) => new Promise((r) => c.once('exit', r))));
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();
  await pool.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
