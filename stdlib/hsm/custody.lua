--- hsm.custody: who holds the key of an archive, and the ProtectServer backup/restore recipes
--- built on it (seed 000). Schemes:
---   components  the archive key is the XOR of custodians' typed components (ctkmu c -k N)
---   single      a key generated in the HSM, stored in the archive wrapped under one
---               custodian's wrapping key (itself from components)
---   xor         M-of-M: the key split into M share files, all needed
---   shamir      N-of-M: any N of M share files (Shamir over GF(2^8))
--- Shares and components exist outside the HSM only in hsm.Secret and in the custodians'
--- files or smart cards (hsm.cards: shares=card:URI,... and file=card:URI,...); the archive
--- key is a session object on each token for the run only.
local core = require("hsm.core")
local wrap = require("hsm.wrap")
local keys = require("hsm.keys")
local archive = require("hsm.archive")
local migrate = require("hsm.migrate")
local ui = require("hsm.ui")
local output = require("hsm.output")
local cards = require("hsm.cards")

local M = {}

local function list(s) local t = {} for x in (s or ""):gmatch("[^,]+") do t[#t + 1] = x end return t end

--- Components from the ctx's `components` (and optional `kcvs`) parameters, each confirmed by
--- its KCV (the recorded value, --yes, or a question on the terminal).
function M.components(ctx, s)
  local p = ctx.params
  local sources = list(p.components)
  if #sources < 1 then error("components: give one or more of file:PATH or prompt, comma-separated", 0) end
  local expected = {}
  for _, kcv in ipairs(list(p.kcvs)) do expected[#expected + 1] = kcv:lower() end
  if #expected > 0 and #expected ~= #sources then
    error(("kcvs lists %d check values for %d components"):format(#expected, #sources), 0)
  end
  return archive.read_components(s, sources, function(i, kcv)
    ctx.say("Component %d KCV : %s", i, kcv:upper())
    if expected[i] then
      if expected[i] ~= kcv then
        error(("component %d has KCV %s, the custodian's record says %s"):format(i, kcv:upper(), expected[i]:upper()), 0)
      end
      return true
    end
    if ctx.yes then return true end
    local answer = ui.confirm("Is this correct?")
    if answer == nil then
      error(("component %d (KCV %s): confirm it with kcvs=... or --yes"):format(i, kcv:upper()), 0)
    end
    return answer
  end)
end

local USAGE = {W = "CKA_WRAP", U = "CKA_UNWRAP", S = "CKA_SIGN", V = "CKA_VERIFY",
               E = "CKA_ENCRYPT", D = "CKA_DECRYPT"}

--- The key the components make, on the session's token.
function M.component_key(ctx, s, label)
  local p = ctx.params
  local extra = {}
  for c in (p.key_attributes or "WU"):gmatch(".") do
    if not USAGE[c] then error(("key_attributes: '%s' is not one of W U S V E D"):format(c), 0) end
    extra[USAGE[c]] = true
  end
  local comps = M.components(ctx, s)
  local key, kcv = archive.key_from_components(s, comps, {label = label, token = p.keep_key, attrs = extra})
  for _, c in ipairs(comps) do c:close() end
  ctx.say("Key '%s' KCV : %s", label, (kcv or "?"):upper())
  return key, #comps
end

local function passphrase(ctx, i)
  local src = list(ctx.params.passphrases)[i]
  if not src then return nil end
  local path = src:match("^file:(.+)$")
  local sec, err
  if path then sec, err = core.secret_file(path)
  elseif src == "prompt" then sec, err = core.secret_prompt(("Passphrase for share %d: "):format(i))
  else error(("passphrases: entry %d must be file:PATH or prompt (not shown: it may be the passphrase)"):format(i), 0) end
  if not sec then error(("passphrase %d: %s"):format(i, err), 0) end
  return sec
end

-- One custodian's share onto their card, read back and decoded before the run goes on.
local function share_to_card(ctx, c, sh, file, m)
  local set = keys.hex(sh.set_id)
  local ok, r = pcall(cards.write, c, {kind = "share", set = set, card = sh.index, cards = m,
                                       data = file, capacity = ctx.params.card_capacity})
  file:close()
  sh.share:close()
  if not ok then error(r, 0) end
  local back = cards.read(c, "share")
  local d, derr = core.share_decode(back.data, sh.passphrase)
  back.data:close()
  if not d or d.index ~= sh.index or d.set_id ~= sh.set_id or d.set_check ~= sh.set_check then
    error(("card %s: share %d does not read back: %s"):format(c.name, sh.index, tostring(derr or "another share")), 0)
  end
  d.share:close()
  ctx.say("card %s: share %d of %d of set %s%s: %d objects, %d bytes", c.name, sh.index, m, set,
    sh.passphrase and ", passphrase-protected" or "", r.objects, r.bytes)
  ctx.emit({event = "card", card = c.name, kind = "share", index = sh.index, of = m, set = set,
            objects = r.objects, bytes = r.bytes, _order = {"event", "card", "kind", "index", "of"}})
end

local ARCHIVE_KEY = {CKA_CLASS = "CKO_SECRET_KEY", CKA_KEY_TYPE = "CKK_AES", CKA_TOKEN = false,
  CKA_PRIVATE = true, CKA_SENSITIVE = true, CKA_WRAP = true, CKA_UNWRAP = true,
  CKA_ENCRYPT = true, CKA_DECRYPT = false, CKA_EXTRACTABLE = false}

local function import_key(s, secret)
  local t = {CKA_VALUE = secret, CKA_LABEL = "hsmsh-archive-key"}
  for k, v in pairs(ARCHIVE_KEY) do t[k] = v end
  return assert(s:create(t))
end

--- The archive key for a backup, per scheme. Returns the key and the archive header's
--- custody facts.
function M.new_key(ctx, s, scheme)
  local p = ctx.params
  if scheme == "components" then
    local key, n = M.component_key(ctx, s, p.key_label)
    return key, {scheme = "components", components = n}
  elseif scheme == "single" then
    local ckey = M.component_key(ctx, s, p.key_label)
    local t = {CKA_VALUE_LEN = 32, CKA_LABEL = "hsmsh-archive-key"}
    for k, v in pairs(ARCHIVE_KEY) do t[k] = v end
    t.CKA_CLASS, t.CKA_KEY_TYPE, t.CKA_EXTRACTABLE = nil, nil, true
    local key = assert(s:generate_key("CKM_AES_KEY_GEN", t))
    local blob = assert(s:wrap(wrap.kwp_mech(s, "CKF_WRAP"), ckey, key))
    local ckcv = keys.kcv(ckey) or archive.value_kcv(s, ckey)
    if not p.keep_key then ckey:destroy() end
    return key, {scheme = "single", custodian_kcv = ckcv, archive_key = keys.hex(blob)}
  end
  -- xor / shamir: a fresh key straight into locked memory, split, then into the HSM.
  local n, m = scheme == "xor" and p.m or p.n, p.m
  if scheme == "shamir" and not (n and m and n >= 2 and n < m and m >= 3) then
    error(("N of M needs 2 <= n < m and m >= 3 (got n=%s m=%s)"):format(tostring(n), tostring(m)), 0)
  end
  if scheme == "xor" and not (m and m >= 2) then error("M of M needs m >= 2", 0) end
  local secret <close> = assert(s:random_secret(32))
  local shares = assert(core.split(secret, scheme, n, m, s))
  for i, sh in ipairs(shares) do
    sh.passphrase = passphrase(ctx, i)
    local file = assert(core.share_encode(sh))
    if ctx.state.share_cards then
      share_to_card(ctx, ctx.state.share_cards[i], sh, file, m)
      goto next
    end
    local path = ("%s/share-%d"):format(p.shares, i)
    local ok, err = file:write(path)
    file:close()
    sh.share:close()
    if not ok then error(("cannot write share %d: %s"):format(i, err), 0) end
    -- Read back and decoded before the run goes on: a share that does not open is no share.
    local raw, rerr = core.secret_read(path)
    local d, derr = raw and core.share_decode(raw, sh.passphrase)
    if raw then raw:close() end
    if not d or d.index ~= sh.index or d.set_id ~= sh.set_id or d.set_check ~= sh.set_check then
      error(("share %d %s does not read back: %s"):format(i, path, tostring(rerr or derr or "another share")), 0)
    end
    d.share:close()
    ctx.say("wrote %s (share %d of %d%s)", path, i, m, sh.passphrase and ", passphrase-protected" or "")
    ::next::
  end
  return import_key(s, secret), {scheme = scheme, threshold = n, count = m,
                                 set_id = keys.hex(shares[1].set_id)}
end

--- The archive key for a restore, from what the archive's header says about its custody.
function M.key_for(ctx, s, custody)
  local p = ctx.params
  local scheme = custody and custody.scheme or "components"
  if scheme == "components" then return (M.component_key(ctx, s, p.key_label)) end
  if scheme == "single" then
    local ckey = M.component_key(ctx, s, p.key_label)
    local blob = custody.archive_key and custody.archive_key:match("^%x+$")
    local t = {}
    for k, v in pairs(ARCHIVE_KEY) do t[k] = v end
    local key, err = blob and s:unwrap(wrap.kwp_mech(s, "CKF_UNWRAP"), ckey, require("hsm").unhex(blob), t)
    if not p.keep_key then ckey:destroy() end
    if not key then error("the custodian's key does not unwrap the archive key: wrong components? (" .. tostring(err) .. ")", 0) end
    return key
  end
  local paths = cards.split(p.shares)
  if #paths == 0 then error("shares: give the share files or cards, comma-separated", 0) end
  local on_cards, by_item = {}, {}
  for _, path in ipairs(paths) do if cards.is_card(path) then on_cards[#on_cards + 1] = path end end
  for j, c in ipairs(cards.open_all(ctx, on_cards)) do by_item[on_cards[j]] = c end
  local decoded, given = {}, {}
  for i, path in ipairs(paths) do
    local raw, err
    local c = by_item[path]
    if c then
      raw = cards.read(c, "share").data
      path = "card " .. c.name
    else
      raw, err = core.secret_read(path)
    end
    if not raw then error(err, 0) end
    local d, derr, why = core.share_decode(raw, passphrase(ctx, i))
    raw:close()
    if not d then
      error(("%s: %s%s"):format(path, derr, why == "passphrase" and " (passphrases=file:PATH,...)" or ""), 0)
    end
    if custody.set_id and keys.hex(d.set_id) ~= custody.set_id then
      error(("%s is share %d of another share set, not this archive's"):format(path, d.index), 0)
    end
    decoded[#decoded + 1] = d
    given[#given + 1] = ("%s, share %d of %d"):format(path, d.index, d.count or 0)
  end
  local secret, err = core.combine(decoded)
  for _, d in ipairs(decoded) do d.share:close() end
  if not secret then
    if #on_cards > 0 then err = ("%s (given: %s)"):format(err, table.concat(given, ", ")) end
    error(err, 0)
  end
  local key = import_key(s, secret)
  secret:close()
  return key
end

-- ------------------------------------------------------------------ the recipes

-- Archives on cards: written to and read from a temporary file (it holds what an archive file
-- holds: wrapped keys and attributes) in $TMPDIR (or /tmp), named with the token's randomness,
-- removed when the run ends; messages name the cards.
local function scratch(ctx, s)
  local tmp = ("%s/hsmsh-cards-%s.arc"):format(os.getenv("TMPDIR") or "/tmp", keys.hex(assert(s:random(8))))
  ctx.defer(function() os.remove(tmp); os.remove(tmp .. ".tmp") end)
  return tmp
end

local function names(list)
  local t = {}
  for _, c in ipairs(list) do t[#t + 1] = c.name end
  return table.concat(t, ", ")
end

-- Calls fn(...), its errors naming the archive on cards instead of the scratch file.
local function on_cards(st, fn, ...)
  if not st.arc_cards then return fn(...) end
  local ok, a, b = pcall(fn, ...)
  if ok then return a, b end
  local msg, at = tostring(a), tostring(a):find(st.file, 1, true)
  if at then msg = msg:sub(1, at - 1) .. "on cards " .. names(st.arc_cards) .. msg:sub(at + #st.file) end
  error(msg, 0)
end

-- Backup preflight for cards: every card opened (one PIN attempt each) and found blank
-- before anything is made.
local function blank_cards(ctx, text)
  local listed, items = cards.listed(text)
  if not listed then return nil end
  local list = cards.open_all(ctx, items)
  for _, c in ipairs(list) do cards.check_blank(c, nil, ctx.yes) end
  return list
end

-- At a terminal, a short list of cards is made up by asking for the next one: its URI (its
-- PIN is then asked unless the URI names a pin-source), opened and checked blank.
local function next_card(ctx, st)
  if ctx.json or not core.isatty(0) then return nil end
  return function(i, need)
    io.stderr:write(("The archive needs %d cards. Insert a blank card for custodian %d and type its URI " ..
      "(pkcs11:token=...; Enter alone stops): "):format(need, i))
    local line = io.stdin:read("l")
    if not line or line:match("^%s*$") then return nil end
    local c = cards.add(st.arc_cards, cards.open(ctx, "card:" .. line:match("^%s*(.-)%s*$")))
    cards.check_blank(c, nil, ctx.yes)
    return c
  end
end

local function archive_to_cards(ctx, st, path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  local set = cards.archive_set(data)
  local held = cards.put_archive(st.arc_cards, data, set, ctx.params.card_capacity, next_card(ctx, st))
  for _, h in ipairs(held) do
    ctx.say("card %s: archive card %d of %d of set %s: %d objects, %d bytes", h.name, h.card, h.cards, set, h.objects, h.bytes)
    ctx.emit({event = "card", card = h.name, kind = "archive", index = h.card, of = h.cards, set = set,
              objects = h.objects, bytes = h.bytes, _order = {"event", "card", "kind", "index", "of"}})
  end
  for i = #held + 1, #st.arc_cards do ctx.say("card %s was not needed: left as it was", st.arc_cards[i].name) end
  return #held
end

local function archive_from_cards(ctx, st, text)
  local listed, items = cards.listed(text)
  if not listed then return text end
  st.arc_cards = cards.open_all(ctx, items)
  local data, first = cards.get_archive(st.arc_cards)
  local tmp = scratch(ctx, st.s)
  output.write(tmp, data, {what = "archive from cards"})
  ctx.say("archive set %s read from %d card(s): %s", first.set, first.cards, names(st.arc_cards))
  return tmp
end

-- The backup itself: the archive key, the archive (to its file or cards), the summary.
local function backup(ctx, st, scheme)
  local p = ctx.params
  local key, custody = M.new_key(ctx, st.s, scheme)
  local path = st.arc_cards and scratch(ctx, st.s) or p.file
  local sum = archive.backup(st.s, key, path, {items = st.items, all_items = st.all_items, custody = custody,
    replace = output.may_replace(ctx),
    on_item = function(e)
      ctx.emit({event = "object", ref = e.ref, status = e.reason and "blocked" or "exported",
                reason = e.reason, _order = {"event", "ref", "status"}})
    end})
  if not p.keep_key then key:destroy() end
  local where = p.file
  if st.arc_cards then where = ("%d card(s)"):format(archive_to_cards(ctx, st, path)) end
  ctx.emit({event = "summary", objects = sum.objects, keys = sum.keys, blocked = sum.blocked,
            _order = {"event", "objects", "keys", "blocked"}})
  ctx.say("wrote %s: %d objects (%d keys wrapped, %d not exportable)", where, sum.objects,
          sum.keys, sum.blocked)
end

local function undo_card(ctx, c)
  if not c.written then return end
  local ok, err = cards.undo(c)
  ctx.say(ok and "card %s: what this run wrote on it was removed" or
    "card %s: what this run wrote on it could not be removed (%s): it is half-written", c.name, tostring(err))
end

--- A ProtectServer backup/restore recipe for one custody scheme. spec: {id, version,
--- description, scheme, params = {extra params}, examples (as help.examples reads them)}.
function M.recipe(spec)
  local params = {
    side = {type = "enum", values = {"backup", "restore"}, doc = "which half runs here"},
    token = {type = "uri", doc = "the token backed up (side=backup) or restored onto (side=restore)"},
    file = {type = "string", doc = "the archive file, or its custodians' cards: card:URI,card:URI,... (any order at restore)"},
    card_capacity = {type = "integer", min = 256, default = cards.DEFAULT_CAPACITY,
                     doc = "bytes one card holds: an archive larger than that spans several cards"},
    filter = {type = "string", default = "", doc = "which objects to back up: label=GLOB,id=HEX,class=,type="},
    workers = {type = "integer", min = 1, max = 32, default = 1,
               doc = "restore: sessions unwrapping in parallel threads (keys are still verified one by one)"},
  }
  for k, v in pairs(spec.params or {}) do params[k] = v end
  return {
    id = spec.id, version = spec.version, description = spec.description, examples = spec.examples,
    tags = {"backup", "archive", "split", "vendor:thales-protectserver"},
    requires = {shell = "0.1", mechanisms = {"CKM_AES_KEY_WRAP_PAD", "CKM_SHA256_HMAC"}},
    params = params,
    phases = {
      {
        name = "preflight",
        plan = function(ctx)
          local p, st = ctx.params, ctx.state
          st.s = ctx.token(p.token, {write = p.side == "restore" or p.keep_key == true})
          if p.side == "backup" then
            -- Before anything is made: an archive or share handed out is never replaced by
            -- surprise (an old share set would no longer open a new file of the same name).
            st.arc_cards = blank_cards(ctx, p.file)
            if not st.arc_cards then output.check_new(p.file, output.may_replace(ctx), "archive") end
            local listed, items = cards.listed(p.shares)
            if listed and p.m and p.m ~= #items then
              error(("m=%d custodians, but %d cards are listed in shares="):format(p.m, #items), 0)
            end
            st.share_cards = listed and blank_cards(ctx, p.shares)
            if st.share_cards then
              p.m = #st.share_cards
            elseif spec.scheme == "xor" or spec.scheme == "shamir" then
              for i = 1, tonumber(p.m) or 0 do
                output.check_new(("%s/share-%d"):format(p.shares, i), false, "share " .. i)
              end
            end
            st.filter = migrate.filter(p.filter)
            local rows, blocked = {}, 0
            local items, all = migrate.index(st.s, st.filter)
            st.items, st.all_items = items, all
            for _, it in ipairs(items) do
              local cls = it.a.CKA_CLASS
              if cls == "CKO_SECRET_KEY" or cls == "CKO_PRIVATE_KEY" then
                it.reason = migrate.blocker(it, {kind = "aes-kwp"}, {})
              end
              it.strategy = it.reason and "blocked" or "export"
              if it.reason then blocked = blocked + 1 end
              rows[#rows + 1] = migrate.row(it)
            end
            ctx.say("%s", ui.table(rows, migrate.columns))
            ctx.say("%d objects, %d cannot be exported", #items, blocked)
          else
            st.file = archive_from_cards(ctx, st, p.file)
            st.parsed = on_cards(st, archive.parse, st.file)
            local h = st.parsed.header
            ctx.say("archive of token %s (serial %s), %d objects, made %s by hsmsh %s, custody: %s",
              tostring(h.source and h.source.label), tostring(h.source and h.source.serial), h.objects or 0,
              os.date("!%Y-%m-%d %H:%M UTC", h.time or 0), tostring(h.hsmsh),
              tostring(h.custody and h.custody.scheme))
            local want = h.custody and h.custody.scheme or "components"
            if want ~= spec.scheme then
              error(("the archive's key is held by scheme %s; restore it with the matching recipe, not %s")
                :format(want, spec.id), 0)
            end
          end
        end,
      },
      {
        name = "backup",
        apply = function(ctx)
          local p, st = ctx.params, ctx.state
          if p.side ~= "backup" then return false end
          if p.shares and not st.share_cards then output.dir(p.shares, "share directory") end
          local ok, err = pcall(backup, ctx, st, spec.scheme)
          if ok then return end
          -- The cards this run wrote go back to blank: no share or part of a failed backup stays.
          for _, c in ipairs(st.share_cards or {}) do undo_card(ctx, c) end
          for _, c in ipairs(st.arc_cards or {}) do undo_card(ctx, c) end
          error(err, 0)
        end,
      },
      {
        name = "restore",
        apply = function(ctx)
          local p, st = ctx.params, ctx.state
          if p.side ~= "restore" then return false end
          local key = M.key_for(ctx, st.s, st.parsed.header.custody)
          local a = on_cards(st, archive.open, st.s, key, st.file)   -- the whole file is checked first
          -- One session per unwrapping thread (sessions share the token's login).
          local sessions = {st.s}
          for i = 2, p.workers do sessions[i] = assert(st.s:module():open(st.s:slot())) end
          local plan = archive.plan(st.s, key, a, {previous = ctx.previous, workers = sessions})
          migrate.refuse_conflicts(plan)
          local ok, sum = pcall(migrate.apply_reported, ctx, plan, "restoring", {workers = p.workers})
          if not p.keep_key then key:destroy() end
          if not ok then error(sum, 0) end
          ctx.say("restored %d objects, %d already there, %d blocked (not exported or not restorable), %d failed",
            sum.migrated, sum.skipped, sum.blocked, sum.failed)
        end,
      },
    },
  }
end

--- Parameters of the component-based schemes.
M.COMPONENT_PARAMS = {
  components = {type = "sources", doc = "the wrapping key's components, each in hex as its custodian keeps it (as long as the key: 32, 48 or 64 digits): file:PATH or prompt, comma-separated"},
  kcvs = {type = "string", required = false, doc = "the components' check values as the custodians recorded them"},
  key_label = {type = "string", default = "AES_WRAP", doc = "label of the wrapping key"},
  key_attributes = {type = "string", default = "WU", doc = "usage of the wrapping key: W U S V (E D make it unsafe)"},
  keep_key = {type = "boolean", default = false, doc = "keep the wrapping key on the token (ctkmu c does)"},
}

--- Parameters of the share-based schemes.
M.SHARE_PARAMS = {
  shares = {type = "string", doc = "side=backup: the directory for share-1..m (made when missing), or one card:URI per custodian; side=restore: the share files or cards, comma-separated"},
  passphrases = {type = "sources", required = false,
                 doc = "per share, in order: file:PATH or prompt (protects the share file)"},
}

return M
