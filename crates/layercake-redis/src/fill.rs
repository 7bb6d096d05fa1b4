//! Conditional fills and tombstones on Redis: one Lua script per operation, run with
//! `EVALSHA` (falling back to `EVAL`, which also caches the script, when the server answers
//! `NOSCRIPT`, e.g. after a restart).
//!
//! - A fill's script reads the key's tombstone and stored entry and writes only when neither
//!   refuses; the tombstone key shares the entry's cluster slot (see [`crate::keys`]), so the
//!   script is atomic on Redis Cluster too.
//! - Selector tombstones live in one hash. On a standalone server the fill's script also reads
//!   that hash and adds the key to its tag indexes, all in one atomic step. On a cluster the
//!   hash is in another slot, so a fill checks it before writing and again after (after its
//!   tag indexes are written), and removes its own entry when a selector tombstone appeared
//!   meanwhile: an `invalidate_with` records its tombstone before it scans, so a fill either
//!   sees it on one of the checks or is found by the scan. The entry may then be visible for
//!   the few milliseconds between the write and its removal.
//! - Versions are compared as two 32-bit halves (Lua numbers are doubles), never as strings.

use std::sync::LazyLock;

use layercake_core::envelope;
use layercake_core::{Entry, Error, FillOutcome, Key, Result, Selector, Tombstone};
use redis::{Cmd, ToRedisArgs};

use crate::backend::RedisBackend;
use crate::error::BACKEND;

/// Helpers shared by every script: 8-byte big-endian / little-endian numbers as (high, low)
/// 32-bit halves, their comparison and packing, and the selector tombstone check.
macro_rules! prelude {
    () => {
        r#"
local function be(s, i)
  local a, b, c, d, e, f, g, h = string.byte(s, i, i + 7)
  return ((a * 256 + b) * 256 + c) * 256 + d, ((e * 256 + f) * 256 + g) * 256 + h
end
local function le(s, i)
  local a, b, c, d, e, f, g, h = string.byte(s, i, i + 7)
  return ((h * 256 + g) * 256 + f) * 256 + e, ((d * 256 + c) * 256 + b) * 256 + a
end
local function ge(ah, al, bh, bl)
  return ah > bh or (ah == bh and al >= bl)
end
local function pack(h, l)
  return string.char(math.floor(h / 16777216) % 256, math.floor(h / 65536) % 256,
    math.floor(h / 256) % 256, h % 256, math.floor(l / 16777216) % 256,
    math.floor(l / 65536) % 256, math.floor(l / 256) % 256, l % 256)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Whether a live selector tombstone in hash `marks` refuses a fill of `key` at version
-- (vh, vl) carrying the tags ARGV[first_tag..]; expired fields are removed on the way.
local function refused_by_marks(marks, key, first_tag, vh, vl)
  local all = redis.call('HGETALL', marks)
  if #all == 0 then return false end
  local now = now_ms()
  local refused = false
  for i = 1, #all, 2 do
    local f, val = all[i], all[i + 1]
    local xh, xl = be(val, 9)
    if xh * 4294967296 + xl <= now then
      redis.call('HDEL', marks, f)
    elseif not refused then
      local mh, ml = be(val, 1)
      if ge(mh, ml, vh, vl) then
        local kind, sel = string.sub(f, 1, 1), string.sub(f, 2)
        if kind == 'p' then
          if string.sub(key, 1, #sel) == sel then refused = true end
        elseif kind == 't' then
          for j = first_tag, #ARGV do
            if ARGV[j] == sel then refused = true end
          end
        end
      end
    end
  end
  return refused
end
"#
    };
}

/// The scripts with their hashes, computed once.
struct Scripts {
    fill: (&'static str, String),
    check: (&'static str, String),
    undo: (&'static str, String),
    delete_with: (&'static str, String),
    mark: (&'static str, String),
}

/// Fill: KEYS = entry, tombstone [, marks, tag index…]; ARGV = envelope, PX ms, version
/// (8 bytes BE), now by the caller's clock (8 bytes BE) [, key text, tag…]. Returns 0 stored,
/// 1 kept (a retained entry at the same or a newer version), 2 tombstoned.
const FILL: &str = concat!(
    prelude!(),
    r#"
local vh, vl = be(ARGV[3], 1)
local t = redis.pcall('GET', KEYS[2])
if type(t) == 'string' and #t == 8 then
  local th, tl = be(t, 1)
  if ge(th, tl, vh, vl) then return 2 end
end
if #KEYS >= 3 and refused_by_marks(KEYS[3], ARGV[5], 6, vh, vl) then return 2 end
local cur = redis.pcall('GET', KEYS[1])
if type(cur) == 'string' and #cur >= 58 and string.sub(cur, 1, 4) == 'LYRC' then
  local eh, el = le(cur, 17)
  local sh, sl = le(cur, 25)
  if ge(sh, sl, eh, el) then eh, el = sh, sl end
  local nh, nl = be(ARGV[4], 1)
  if not ge(nh, nl, eh, el) then
    local ch, cl = le(cur, 33)
    if ge(ch, cl, vh, vl) then return 1 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
for i = 4, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[5])
  redis.call('PEXPIRE', KEYS[i], ARGV[2], 'NX')
  redis.call('PEXPIRE', KEYS[i], ARGV[2], 'GT')
end
return 0
"#
);

/// Selector check (cluster): KEYS = marks; ARGV = version (8 bytes BE), key text, tag….
/// Returns 1 when refused.
const CHECK: &str = concat!(
    prelude!(),
    r#"
local vh, vl = be(ARGV[1], 1)
if refused_by_marks(KEYS[1], ARGV[2], 3, vh, vl) then return 1 end
return 0
"#
);

/// Undo a fill (cluster): KEYS = entry; ARGV = the envelope written. Removes the entry only
/// if it still holds exactly those bytes.
const UNDO: &str = r#"
local cur = redis.pcall('GET', KEYS[1])
if cur == ARGV[1] then redis.call('UNLINK', KEYS[1]) return 1 end
return 0
"#;

/// Delete with a tombstone: KEYS = entry, tombstone; ARGV = version (8 bytes BE), ttl ms.
/// A live tombstone of a higher version or a longer life keeps them.
const DELETE_WITH: &str = concat!(
    prelude!(),
    r#"
redis.call('UNLINK', KEYS[1])
local v = ARGV[1]
local ttl = tonumber(ARGV[2])
local old = redis.pcall('GET', KEYS[2])
if type(old) == 'string' and #old == 8 then
  local oh, ol = be(old, 1)
  local vh, vl = be(v, 1)
  if ge(oh, ol, vh, vl) then v = old end
  local p = redis.call('PTTL', KEYS[2])
  if p > ttl then ttl = p end
end
redis.call('SET', KEYS[2], v, 'PX', ttl)
return 0
"#
);

/// Record a selector tombstone: KEYS = marks; ARGV = field, version (8 bytes BE), ttl ms.
/// Expiry is judged by the server's clock, like the `PX` of key tombstones.
const MARK: &str = concat!(
    prelude!(),
    r#"
local now = now_ms()
local vh, vl = be(ARGV[2], 1)
local exp = now + tonumber(ARGV[3])
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and #old == 16 then
  local xh, xl = be(old, 9)
  local oexp = xh * 4294967296 + xl
  if oexp > now then
    local oh, ol = be(old, 1)
    if ge(oh, ol, vh, vl) then vh, vl = oh, ol end
    if oexp > exp then exp = oexp end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], pack(vh, vl) .. pack(math.floor(exp / 4294967296), exp % 4294967296))
if redis.call('PTTL', KEYS[1]) < exp - now then
  redis.call('PEXPIRE', KEYS[1], exp - now)
end
return 0
"#
);

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let with_sha = |src: &'static str| (src, sha1_hex(src.as_bytes()));
    Scripts {
        fill: with_sha(FILL),
        check: with_sha(CHECK),
        undo: with_sha(UNDO),
        delete_with: with_sha(DELETE_WITH),
        mark: with_sha(MARK),
    }
});

/// The SHA-1 of `data` in lower-case hex: the name `EVALSHA` knows a script by.
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// Whether `e` is Redis's "no script with this hash" answer.
fn is_noscript(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<redis::RedisError>())
        .is_some_and(|r| {
            r.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                || r.code() == Some("NOSCRIPT")
        })
}

/// A script call's keys and arguments, written after `EVALSHA sha n` or `EVAL src n`.
struct Call {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl Call {
    fn new(keys: Vec<String>) -> Call {
        Call {
            keys,
            args: Vec::new(),
        }
    }

    fn arg<T: ToRedisArgs>(mut self, a: T) -> Call {
        self.args.extend(a.to_redis_args());
        self
    }

    fn cmd(&self, name: &str, script: &str) -> Cmd {
        let mut c = redis::cmd(name);
        c.arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        c
    }
}

/// Big-endian bytes of a version or instant, as the scripts read them.
fn be8(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

impl RedisBackend {
    /// Run `script` (source and SHA-1) with `call`: `EVALSHA`, then `EVAL` on `NOSCRIPT`.
    async fn eval(
        &self,
        op: &'static str,
        script: &(&'static str, String),
        call: &Call,
    ) -> Result<i64> {
        let redis = self.redis();
        match redis.cmd::<i64>(op, &call.cmd("EVALSHA", &script.1)).await {
            Err(e) if is_noscript(&e) => redis.cmd(op, &call.cmd("EVAL", script.0)).await,
            r => r,
        }
    }

    /// Whether a live selector tombstone refuses `entry` for `key` (cluster mode).
    async fn marks_refuse(&self, key: &Key, entry: &Entry) -> Result<bool> {
        let mut call = Call::new(vec![self.layout().marks()])
            .arg(&be8(entry.version)[..])
            .arg(key.as_str());
        for t in entry.tags.iter() {
            call = call.arg(t.as_str());
        }
        Ok(self.eval("fill", &SCRIPTS.check, &call).await? == 1)
    }

    /// [`Backend::fill`](layercake_core::Backend::fill).
    pub(crate) async fn fill_entry(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        let now = self.config().clock.now();
        let ms = entry.remaining(now).as_millis().min(i64::MAX as u128) as u64;
        if ms == 0 {
            return Ok(FillOutcome::Expired);
        }
        let bytes = envelope::encode_with_limits(key, entry, &self.config().limits)
            .map_err(|e| e.with_backend(BACKEND))?;
        let layout = self.layout();
        let cluster = self.redis().is_cluster();
        let mut keys = vec![layout.entry(key), layout.tombstone(key)];
        if !cluster {
            keys.push(layout.marks());
            keys.extend(entry.tags.iter().map(|t| layout.tag(t)));
        }
        let mut call = Call::new(keys)
            .arg(&bytes[..])
            .arg(ms)
            .arg(&be8(entry.version)[..])
            .arg(&be8(now.0)[..]);
        if !cluster {
            call = call.arg(key.as_str());
            for t in entry.tags.iter() {
                call = call.arg(t.as_str());
            }
            return outcome(self.eval("fill", &SCRIPTS.fill, &call).await?);
        }
        if self.marks_refuse(key, entry).await? {
            return Ok(FillOutcome::Tombstoned);
        }
        let done = outcome(self.eval("fill", &SCRIPTS.fill, &call).await?)?;
        if !done.is_stored() {
            return Ok(done);
        }
        if !entry.tags.is_empty() {
            let mut cmds = Vec::with_capacity(3 * entry.tags.len());
            for t in entry.tags.iter() {
                let tk = layout.tag(t);
                let mut sadd = redis::cmd("SADD");
                sadd.arg(&tk).arg(key.as_str());
                cmds.push((tk.clone(), sadd));
                let mut nx = redis::cmd("PEXPIRE");
                nx.arg(&tk).arg(ms).arg("NX");
                cmds.push((tk.clone(), nx));
                let mut gt = redis::cmd("PEXPIRE");
                gt.arg(&tk).arg(ms).arg("GT");
                cmds.push((tk, gt));
            }
            self.redis().batch("fill", cmds).await?;
        }
        if self.marks_refuse(key, entry).await? {
            let undo = Call::new(vec![layout.entry(key)]).arg(&bytes[..]);
            self.eval("fill", &SCRIPTS.undo, &undo).await?;
            return Ok(FillOutcome::Tombstoned);
        }
        Ok(FillOutcome::Stored)
    }

    /// [`Backend::fill_many`](layercake_core::Backend::fill_many): fills run concurrently,
    /// up to `batch_size` at a time (they share the connection's pipeline).
    pub(crate) async fn fill_entries(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.config().batch_size.max(1)) {
            let mut fills = Vec::with_capacity(chunk.len());
            for (k, e) in chunk {
                fills.push(self.fill_entry(k, e));
            }
            for r in futures::future::join_all(fills).await {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// [`Backend::delete_with`](layercake_core::Backend::delete_with).
    pub(crate) async fn delete_with_tombstone(&self, key: &Key, t: Tombstone) -> Result<()> {
        let ttl = t.ttl.as_millis().min(i64::MAX as u128) as u64;
        if ttl == 0 {
            return layercake_core::Backend::delete(self, key).await;
        }
        let layout = self.layout();
        let call = Call::new(vec![layout.entry(key), layout.tombstone(key)])
            .arg(&be8(t.version)[..])
            .arg(ttl);
        self.eval("delete_with", &SCRIPTS.delete_with, &call)
            .await
            .map(|_| ())
    }

    /// [`Backend::invalidate_with`](layercake_core::Backend::invalidate_with): record the
    /// selector tombstone, then remove as `invalidate` does.
    pub(crate) async fn invalidate_with_tombstone(
        &self,
        selector: &Selector,
        t: Tombstone,
    ) -> Result<()> {
        let ttl = t.ttl.as_millis().min(i64::MAX as u128) as u64;
        let field = match selector {
            Selector::Prefix(p) => Some(format!("p{p}")),
            Selector::Tag(tag) => Some(format!("t{tag}")),
            _ => None,
        };
        if let (Some(field), true) = (field, ttl > 0) {
            let call = Call::new(vec![self.layout().marks()])
                .arg(field)
                .arg(&be8(t.version)[..])
                .arg(ttl);
            self.eval("invalidate_with", &SCRIPTS.mark, &call).await?;
        }
        layercake_core::Backend::invalidate(self, selector).await
    }
}

fn outcome(code: i64) -> Result<FillOutcome> {
    match code {
        0 => Ok(FillOutcome::Stored),
        1 => Ok(FillOutcome::KeptNewer),
        2 => Ok(FillOutcome::Tombstoned),
        other => {
            Err(Error::corrupt(format!("the fill script returned {other}")).with_backend(BACKEND))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_have_distinct_hashes() {
        let s = &*SCRIPTS;
        let mut hashes = vec![
            &s.fill.1,
            &s.check.1,
            &s.undo.1,
            &s.delete_with.1,
            &s.mark.1,
        ];
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 5);
        assert!(hashes.iter().all(|h| h.len() == 40));
        assert_eq!(be8(1), [0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            sha1_hex(&[b'a'; 1000]),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }
}
