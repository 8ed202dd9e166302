--- hsm.migrate: moving objects from a source token to a destination token.
---
---   local plan = migrate.plan(src, dst, {filter=, transport=, kek=, capacity=, fips=})
---   migrate.apply(plan, {journal=, previous=, on_item=})   -- per item: migrated|skipped|...
---
--- The plan enumerates both tokens once and gives each source object a strategy (wrap, copy,
--- skip) or a blocker (conflict, non-extractable, 3DES into FIPS, over capacity, unsafe
--- wrapping key). Apply writes only to the destination, journals each step before and after
--- it, recovers what an error or a kill may have left, verifies every key (KCV or fingerprint
--- plus an operation on one side checked on the other) and diffs every attribute.
local core = require("hsm.core")
local keys = require("hsm.keys")
local attrs = require("hsm.attrs")
local wrap = require("hsm.wrap")
local trust = require("hsm.trust")
local verify = require("hsm.verify")
local claim = require("hsm.claim")
local provenance = require("hsm.provenance")

local M = {}
local hex = keys.hex

local SHORT = {CKO_SECRET_KEY = "secret-key", CKO_PRIVATE_KEY = "private-key",
               CKO_PUBLIC_KEY = "public-key", CKO_CERTIFICATE = "certificate", CKO_DATA = "data",
               CKO_DOMAIN_PARAMETERS = "domain-parameters"}

--- The identity of an object across tokens: class, ID and label.
function M.ref(a)
  return ("%s/%s/%s"):format(SHORT[a.CKA_CLASS] or tostring(a.CKA_CLASS), hex(a.CKA_ID or ""),
                             a.CKA_LABEL or "")
end

-- ------------------------------------------------------------------ filter

local function glob(p)
  return "^" .. p:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
end

--- A filter from "label=GLOB,id=HEX,class=secret-key,type=AES" (any subset; "" = all).
--- Returns a predicate over captured attributes; raises naming a bad clause.
function M.filter(spec)
  local tests = {}
  for clause in (spec or ""):gmatch("[^,]+") do
    local k, v = clause:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if not k then error(("filter clause '%s' is not name=value"):format(clause), 0) end
    if k == "label" then
      local pat = glob(v)
      tests[#tests + 1] = function(a) return (a.CKA_LABEL or ""):match(pat) ~= nil end
    elseif k == "id" then
      if v:find("[^%x]") or #v % 2 ~= 0 then error(("filter id=%s is not hex"):format(v), 0) end
      tests[#tests + 1] = function(a) return hex(a.CKA_ID or "") == v:lower() end
    elseif k == "class" then
      local ok = false
      for _, s in pairs(SHORT) do ok = ok or s == v end
      if not ok then error(("filter class=%s: one of secret-key, private-key, public-key, certificate, data"):format(v), 0) end
      tests[#tests + 1] = function(a) return SHORT[a.CKA_CLASS] == v end
    elseif k == "type" or k == "key_type" then
      local kt = core.key_type(v)
      if not kt then error(("filter type=%s is not a PKCS#11 key type (AES, DES3, RSA, EC, GENERIC_SECRET, ...)"):format(v), 0) end
      tests[#tests + 1] = function(a) return a.CKA_KEY_TYPE == kt end
    else
      error(("unknown filter '%s' (label, id, class, type)"):format(k), 0)
    end
  end
  return function(a)
    for _, t in ipairs(tests) do if not t(a) then return false end end
    return true
  end
end

-- ------------------------------------------------------------------ facts about objects

local check_of = provenance.check_of

-- unreadable: a list to collect objects whose class cannot even be read (a module killed
-- while writing them); without it such an object is an error. Session objects and the HSM's
-- identity and trust objects are left out.
local function index(session, filter, no_checks, unreadable)
  local list, lerr = session:objects()   -- one enumeration; a failed search is an error
  if not list then error("listing the token's objects failed: " .. tostring(lerr), 0) end
  local items, by_id = {}, {}
  for _, obj in ipairs(list) do
    local ok, a = pcall(attrs.capture, obj)
    local damaged
    -- Only an object-level refusal marks the object damaged; a device or session error is
    -- an error of the whole run.
    if not ok and not tostring(a):find("CKR_ATTRIBUTE_", 1, true) then error(a, 0) end
    if not ok then
      -- A damaged object (a module killed while writing it): known by what can still be read.
      damaged = a
      local cls = obj:get("CKA_CLASS")
      if not cls and not unreadable then
        error(("%s cannot be read at all (%s); repair or remove it first"):format(tostring(obj), damaged), 0)
      end
      if not cls then unreadable[#unreadable + 1] = obj end
      a = cls and {CKA_CLASS = cls, CKA_ID = obj:get("CKA_ID"), CKA_LABEL = obj:get("CKA_LABEL"), CKA_TOKEN = true}
    end
    -- The HSM's own identity and trust objects (hsm.trust) never travel: each HSM has its
    -- own; nor do the leases of runs claiming the token (hsm.claim).
    if a and a.CKA_TOKEN ~= false and not trust.is_identity_object(a) and not claim.is_lease(a) then
      items[#items + 1] = {obj = obj, a = a, ref = M.ref(a), damaged = damaged}
    end
  end
  if no_checks then return items, items end
  for _, it in ipairs(items) do
    if it.a.CKA_CLASS == "CKO_PUBLIC_KEY" or it.a.CKA_CLASS == "CKO_CERTIFICATE" then
      by_id[it.a.CKA_ID or ""] = by_id[it.a.CKA_ID or ""] or keys.fingerprint(it.obj)
    end
  end
  local out = {}
  for _, it in ipairs(items) do
    if not filter or filter(it.a) then
      if not it.damaged then it.check = check_of(it.obj, it.a, by_id) end
      out[#out + 1] = it
    end
  end
  return out, items
end

--- A digest of token objects' attributes (handles aside): equal before and after proves the
--- source was not changed. items: captured {a=} entries (e.g. a plan's all_src), or a
--- session to read them from.
function M.fingerprint(items)
  if type(items) ~= "table" then items = index(items, nil, true) end
  local lines = {}
  for _, it in ipairs(items) do
    local names, parts = {}, {}
    for n in pairs(it.a) do names[#names + 1] = n end
    table.sort(names)
    for _, n in ipairs(names) do parts[#parts + 1] = n .. "=" .. attrs.show(it.a[n]) end
    lines[#lines + 1] = table.concat(parts, ";")
  end
  table.sort(lines)
  return hex(core.sha256(table.concat(lines, "\n"))), #items
end

-- ------------------------------------------------------------------ plan

local NON_EXTRACTABLE = "not extractable: no PKCS#11 call can export it, not even for token "
  .. "replication; re-encrypt its data under a new key with generic/rotate-reencrypt"

local DES_LEN = {CKK_DES = 8, CKK_DES2 = 16, CKK_DES3 = 24}   -- they have no CKA_VALUE_LEN

--- Why a key cannot travel with transport t (nil when it can). opts: {fips=}.
local function blocker(it, t, opts)
  local a = it.a
  local cls = a.CKA_CLASS
  if a.CKA_EXTRACTABLE ~= true then return NON_EXTRACTABLE end
  if t.unavailable then return t.unavailable end
  if a.CKA_WRAP_WITH_TRUSTED == true then
    if not t.trusted then
      return "CKA_WRAP_WITH_TRUSTED: only a trusted wrapping key may carry it (token replication with the SO PIN)"
    end
  end
  local kt = a.CKA_KEY_TYPE
  if opts.fips and (kt == "CKK_DES3" or kt == "CKK_DES2" or kt == "CKK_DES") then
    return "3DES into a FIPS target (3DES is no longer approved for protection; non-FIPS target only)"
  end
  if a.CKA_ALWAYS_AUTHENTICATE == true then
    return "CKA_ALWAYS_AUTHENTICATE: wrapping it needs a context-specific login per key"
  end
  if t.unsafe then return "unsafe wrapping key: " .. t.unsafe end
  local need = wrap.strength(a)
  if t.strength and need > t.strength then
    return ("unsafe wrapping key: %d-bit strength is weaker than the %d-bit payload"):format(t.strength, need)
  end
  if t.kind == "rsa-oaep" and cls == "CKO_PRIVATE_KEY" then
    return t.private or "RSA-OAEP cannot carry a private key (use transport=rsa-aes)"
  end
  -- The payload's length where it is known: a secret key's (a private key's PKCS#8 is not).
  local len = cls == "CKO_SECRET_KEY" and ((a.CKA_VALUE_LEN or 0) > 0 and a.CKA_VALUE_LEN or DES_LEN[kt]) or nil
  if t.block_only and (not len or len % 16 ~= 0) then
    return ("the tokens share only %s, which carries secret keys of a whole number of 16-byte "
      .. "blocks, and this key is not one"):format(t.cbc)
  end
  if t.aligned_only and not t.same_quirk and (not len or len % 8 ~= 0) then
    return "the two sides' AES-KWP agree only for payloads that are a multiple of 8 bytes "
      .. "(one zero-pads: SoftHSM2's CKM_AES_KEY_WRAP_PAD), and this key's is not"
  end
  return nil
end

-- Why the destination cannot hold an object as the source has it (nil when it can): token
-- data objects on a module that refuses them, a public key type it is not given, a key of a
-- type it has no mechanism for (openCryptoki 3.8 and EC), or an attribute value it cannot
-- record (hsm.attrs.template names it; nothing is dropped silently).
local KEY_MECHS = {CKK_EC = "CKM_EC", CKK_EC_EDWARDS = "CKM_EDDSA", CKK_RSA = "CKM_RSA",
                   CKK_AES = "CKM_AES", CKK_DES3 = "CKM_DES3", CKK_DES2 = "CKM_DES3"}

local function unstorable(it, dst, quirks, is_key)
  local cls = it.a.CKA_CLASS
  if cls == "CKO_DATA" and quirks.no_token_data then
    return ("the destination (%s) refuses token data objects (%s)"):format(quirks.name, quirks.no_token_data)
  end
  if cls == "CKO_DATA" and quirks.no_public_data and it.a.CKA_PRIVATE == false then
    return ("the destination (%s) refuses data objects with CKA_PRIVATE=false (%s)"):format(quirks.name,
      quirks.no_public_data)
  end
  if cls == "CKO_PUBLIC_KEY" and quirks.public_key_types and not quirks.public_key_types[it.a.CKA_KEY_TYPE] then
    local types = {}
    for kt in pairs(quirks.public_key_types) do types[#types + 1] = (kt:gsub("^CKK_", "")) end
    table.sort(types)
    return ("the destination (%s) can be given only %s public keys"):format(quirks.name, table.concat(types, ", "))
  end
  local family = is_key and KEY_MECHS[it.a.CKA_KEY_TYPE]
  if family then
    local any = false
    for name in pairs(wrap.mechanisms(dst)) do any = any or name:sub(1, #family) == family end
    if not any then
      return ("the destination (%s) lists no %s* mechanism: it could hold the key but not use it")
        :format(quirks.name, family)
    end
  end
  local ok, err = pcall(attrs.template, it.a, is_key and "unwrap" or "create", quirks)
  if not ok then return tostring(err) end
end

--- Objects with CKA_TOKEN=false seen by a process that has made none yet: impossible in
--- PKCS#11 (session objects die with their process), yet SoftHSM2 leaves them when a process
--- is killed while creating one (the object's file is written before the template is
--- applied). Called before a run makes its own session objects.
function M.ghosts(session)
  local list, err = session:find_all({CKA_TOKEN = false})
  if not list then error("listing the token's session objects failed: " .. tostring(err), 0) end
  return list
end

--- On resume: removes the ghosts (above) on dst that hold a key the journal had in flight
--- (its check value; hsm.provenance) and leaves any other, on dst or src (the source is never
--- written). Returns how many were removed and how many were left.
function M.clear_ghosts(ctx, dst, src)
  local inflight = {}
  for _, checks in pairs(M.inflight(ctx.previous)) do
    for c in pairs(checks) do inflight[c] = true end
  end
  local removed, left = 0, #M.ghosts(src)
  for _, ghost in ipairs(M.ghosts(dst)) do
    if provenance.judge(ghost, inflight) == "ours" then
      ctx.journal({event = "step", step = "destroy-ghost", side = "destination"})
      ghost:destroy()
      removed = removed + 1
    else
      left = left + 1
    end
  end
  return removed, left
end

M.blocker = blocker
M.index = index
M.check_of = check_of

--- The refs an earlier run started and did not finish, from its journal events: each with
--- the set of check values its "create" steps recorded ({[ref] = {[check] = true}}).
function M.inflight(previous)
  local out = {}
  for _, ev in ipairs(previous or {}) do
    if ev.event == "step" and ev.ref then
      if ev.step == "done" then out[ev.ref] = nil
      else
        out[ev.ref] = out[ev.ref] or {}
        if ev.check then out[ev.ref][ev.check] = true end
      end
    end
  end
  return out
end

--- Plans a migration (read-only). opts: {filter=predicate, transport=t (hsm.transport),
--- capacity=N, fips=bool, previous={journal events of an interrupted run}}. Returns
--- {items = {{ref, a, obj, check, strategy, reason, dst}...}, counts = {}, conflicts = N}.
function M.plan(src, dst, opts)
  opts = opts or {}
  local srcs, all_src = index(src, opts.filter)
  local pubs = {}
  for _, it in ipairs(all_src) do
    if it.a.CKA_CLASS == "CKO_PUBLIC_KEY" then pubs[it.a.CKA_ID or ""] = it.obj end
  end
  local function pub_of(id) return pubs[id] end
  return M.plan_items(srcs, dst, opts, {src = src, all_src = all_src, pub_of = pub_of,
    src_quirks = attrs.quirks(src), prove = function(it, d_obj)
    return verify.functional(src, it.obj, dst, d_obj, it.a, pub_of)
  end})
end

-- Whether an operation on the source, checked on obj, shows that obj holds item it's key.
local function proves(plan, it, obj)
  local ok, how = pcall(plan.prove, it, obj)
  return ok and not how:find("only", 1, true)
end

-- A key the destination holds already under another class, ID or label (renamed on one
-- side, or copied under another name) is not copied a second time: the item is blocked,
-- naming the object that holds it, proven by an operation. Destination objects that are
-- the twins of source objects do not count (a source may hold one key under two names), nor
-- do items in flight in an interrupted run (what it left is judged below).
local function held_elsewhere(plan, srcs, dsts, inflight)
  local src_refs, held = {}, {}
  for _, it in ipairs(srcs) do src_refs[it.ref] = true end
  for _, d in ipairs(dsts) do
    if d.check and not src_refs[d.ref] then
      held[d.check] = held[d.check] or {}
      table.insert(held[d.check], d)
    end
  end
  if not next(held) then return end
  for _, it in ipairs(plan.items) do
    local cls = it.a.CKA_CLASS
    if it.check and held[it.check] and not inflight[it.ref] and not it.held_as
       and (cls == "CKO_SECRET_KEY" or cls == "CKO_PRIVATE_KEY")
       and (it.strategy == "wrap" or it.strategy == "blocked") then
      for _, d in ipairs(held[it.check]) do
        if d.a.CKA_CLASS == cls and proves(plan, it, d.obj) then
          plan.counts[it.strategy] = plan.counts[it.strategy] - 1
          it.strategy, it.held_as = "blocked", d.ref
          it.reason = ("the destination holds this key already as %s (another class, ID or label: "
            .. "renamed on one side?); it is not copied a second time: give both the same "
            .. "class, ID and label"):format(d.ref)
          plan.counts.blocked = (plan.counts.blocked or 0) + 1
          break
        end
      end
    end
  end
end

--- Plans items that may come from a source session or from a manifest (split runs): each
--- {ref=, a=<attributes>, check=, obj= | blob=}. base: fields of the plan, among them
--- prove(it, dst_obj) -> description, raising when the destination object is not the key.
function M.plan_items(srcs, dst, opts, base)
  -- One order whatever the module enumerates (its memory layout): class, ID, label; plans,
  -- reports and journals of two runs can be compared line by line.
  local sorted = {}
  for i, it in ipairs(srcs) do sorted[i] = it end
  local function key(it) return (SHORT[it.a.CKA_CLASS] or tostring(it.a.CKA_CLASS)) .. "\0" .. hex(it.a.CKA_ID or "") .. "\0" .. (it.a.CKA_LABEL or "") end
  table.sort(sorted, function(x, y) return key(x) < key(y) end)
  srcs = sorted
  -- Resuming, an object nothing can be read of may be what a killed write left.
  local unreadable = opts.previous and {} or nil
  local dsts = index(dst, nil, false, unreadable)
  local inflight = M.inflight(opts.previous)
  local at_dst = {}
  for _, d in ipairs(dsts) do
    at_dst[d.ref] = at_dst[d.ref] or {}
    table.insert(at_dst[d.ref], d)
  end
  local plan = base
  plan.dst_quirks = attrs.quirks(dst)
  plan.items, plan.counts, plan.conflicts = {}, {}, 0
  plan.transport, plan.dst, plan.inflight = opts.transport, dst, inflight
  -- How many destination objects each ref has now: journaled before the first write, so a
  -- resume knows which objects without a label or ID appeared during the run.
  plan.dst_counts = {}
  for _, d in ipairs(dsts) do plan.dst_counts[d.ref] = (plan.dst_counts[d.ref] or 0) + 1 end
  -- What an in-flight item may have left is proven ours only by holding its key: the
  -- source's check value, or one its "create" step journaled (the source may have changed
  -- since), or an operation on the source checked on the candidate.
  local function expected(it)
    local set = {}
    for c in pairs(inflight[it.ref] or {}) do set[c] = true end
    if it.check then set[it.check] = true end
    return set
  end
  local dst_keys, seen = 0, {}
  for _, d in ipairs(dsts) do
    if d.a.CKA_CLASS == "CKO_SECRET_KEY" or d.a.CKA_CLASS == "CKO_PRIVATE_KEY" then dst_keys = dst_keys + 1 end
  end
  for _, it in ipairs(srcs) do
    local cls = it.a.CKA_CLASS
    local is_key = cls == "CKO_SECRET_KEY" or cls == "CKO_PRIVATE_KEY"
    local there = at_dst[it.ref]
    local same = false
    if there and #there == 1 and not there[1].damaged then
      same = it.check ~= nil and it.check == there[1].check
      if not same and is_key and (there[1].check == nil or it.check == nil) then
        -- One side shows no check value (EC private keys and some unwrapped secret keys on
        -- SoftHSM2; the source is such a copy when a blue/green sync carries keys back): an
        -- operation on one side checked on the other decides.
        same = proves(plan, it, there[1].obj)
      end
    end
    -- In flight when an earlier run stopped, and not the source's key as it stands: each
    -- object under its ref is judged by what it holds.
    local judged
    if there and not same and inflight[it.ref] then
      local objs = {}
      for _, d in ipairs(there) do objs[#objs + 1] = d.obj end
      judged = provenance.sort(objs, expected(it), {prove = function(o) return proves(plan, it, o) end})
    end
    if it.damaged then
      it.strategy, it.reason = "blocked", "its attributes cannot be read: " .. it.damaged
    elseif seen[it.ref] then
      it.strategy, it.reason = "blocked", "ambiguous: another source object has the same class, ID and label"
    elseif there and same then
      it.dst = there[1].obj
      it.strategy, it.reason = "skip", "already on the destination (same " ..
        (cls == "CKO_SECRET_KEY" and "KCV" or cls == "CKO_PRIVATE_KEY" and "key" or "value") .. ")"
    elseif there and not judged then
      it.strategy = "conflict"
      it.reason = #there > 1 and ("%d objects on the destination have this class, ID and label"):format(#there)
        or there[1].damaged and ("the destination's object with this class, ID and label is damaged (%s)"):format(there[1].damaged)
        or (it.check and there[1].check or not is_key)
          and ("the destination has a different object with this class, ID and label (%s vs %s)")
            :format(it.check or "?", there[1].check or "?")
        or ("the destination has an object with this class, ID and label that cannot be proven "
          .. "to hold the same key (check value %s vs %s, and no operation both keys allow)")
            :format(it.check or "none", there[1].check or "none")
    elseif judged and #judged.foreign > 0 then
      it.strategy = "conflict"
      it.reason = ("in flight when the earlier run stopped, and the destination's object with this "
        .. "class, ID and label now holds another key (%s; the run was making %s): another program "
        .. "wrote it; nothing was changed"):format(judged.foreign[1].detail, it.check or "?")
    elseif judged and #judged.unproven > 0 then
      it.strategy = "unproven"
      it.reason = ("in flight when the earlier run stopped; the destination's object with this class, "
        .. "ID and label cannot be proven to be the one it was making (%s), so it was left in place: "
        .. "remove it if it is not yours, then resume"):format(judged.unproven[1].detail)
    else
      -- Not there, or left half-made by an interrupted run of ours (proven, replaced).
      it.redo = judged and judged.ours
      local why = it.blocked or (is_key and (opts.transport and blocker(it, opts.transport, opts) or
                              not opts.transport and "no transport")) or
                  (not is_key and it.a.CKA_TRUSTED == true and "CKA_TRUSTED objects need an SO session (hsm.trust)")
                  or unstorable(it, dst, plan.dst_quirks, is_key)
      if why then
        it.strategy, it.reason = "blocked", why
      elseif is_key and opts.capacity and dst_keys + 1 > opts.capacity then
        it.strategy, it.reason = "blocked", ("over capacity: the destination holds at most %d keys"):format(opts.capacity)
      else
        it.strategy = is_key and "wrap" or "copy"
        it.reason = it.redo and "replaces what an interrupted run left half-made" or nil
        if is_key then dst_keys = dst_keys + 1 end
      end
    end
    seen[it.ref] = true
    if it.strategy == "conflict" then plan.conflicts = plan.conflicts + 1 end
    plan.counts[it.strategy] = (plan.counts[it.strategy] or 0) + 1
    plan.items[#plan.items + 1] = it
  end
  held_elsewhere(plan, srcs, dsts, inflight)
  -- Objects without label or ID that appeared during the interrupted run, and objects nothing
  -- can be read of, may be what a killed C_UnwrapKey left: removed only when they hold a key
  -- that was in flight; any other is listed and left.
  local before
  for _, ev in ipairs(opts.previous or {}) do
    if ev.event == "destination" and not before then before = ev.counts end
  end
  local candidates, taken, count = {}, {}, {}
  for _, it in ipairs(plan.items) do if it.dst then taken[it.dst] = true end end
  for _, obj in ipairs(unreadable or {}) do candidates[#candidates + 1] = obj end
  for _, d in ipairs(before and dsts or {}) do
    count[d.ref] = (count[d.ref] or 0) + 1
    local anonymous = (d.a.CKA_LABEL or "") == "" and (d.a.CKA_ID or "") == ""
    local key = d.a.CKA_CLASS == "CKO_SECRET_KEY" or d.a.CKA_CLASS == "CKO_PRIVATE_KEY"
    if anonymous and key and count[d.ref] > (before[d.ref] or 0) and not taken[d.obj] then
      candidates[#candidates + 1] = d.obj
    end
  end
  local flying, all = {}, {}
  for _, it in ipairs(plan.items) do
    if inflight[it.ref] then
      flying[#flying + 1] = it
      for c in pairs(expected(it)) do all[c] = true end
    end
  end
  for _, set in pairs(inflight) do for c in pairs(set) do all[c] = true end end
  local judged = provenance.sort(candidates, all, {prove = function(obj)
    for _, it in ipairs(flying) do
      if it.a.CKA_CLASS == obj.class and proves(plan, it, obj) then return true end
    end
  end})
  plan.strays, plan.unproven = judged.ours, judged.unproven
  return plan
end

--- One plan row for tables and JSON.
function M.row(it)
  return {class = SHORT[it.a.CKA_CLASS] or it.a.CKA_CLASS,
          key_type = it.a.CKA_KEY_TYPE and it.a.CKA_KEY_TYPE:gsub("^CKK_", "") or nil,
          label = it.a.CKA_LABEL or "", id = hex(it.a.CKA_ID or ""), strategy = it.strategy,
          reason = it.reason, check = it.check and it.check:sub(1, 16) or ""}
end
M.columns = {{"class", "CLASS"}, {"key_type", "TYPE"}, {"label", "LABEL"}, {"id", "ID"},
             {"check", "KCV/FINGERPRINT"}, {"strategy", "STRATEGY"}, {"reason", "REASON"}}

-- ------------------------------------------------------------------ apply

--- Finishes one item whose object exists on the destination: attributes the template could
--- not carry are set (as the seed's step 8), then the check value, every attribute and an
--- operation are verified. Returns {forced = {names}, verified = how}; raises on a mismatch.
local function blank(v) return v == 0 or v == nil or v == "" end

--- The differences between a source item and a destination capture, split into those the
--- modules force or do not record (forced: names) and real ones (bad: sentences). The
--- source may be a copy itself (a blue/green sync back, a second hop): what its module did
--- not record when it unwrapped the key reads 0 or empty there.
local function classify(plan, it, got)
  local quirks = plan.dst_quirks or {}
  local unrecorded = quirks.unrecorded or {}
  local src_unrecorded = (plan.src_quirks or {}).unrecorded or {}
  local forced, bad, entries = {}, {}, {}
  for _, d in ipairs(attrs.diff(it.a, got)) do
    if d.forced then forced[#forced + 1] = d.name
    elseif (quirks.imposes or {})[d.name] and (d.from == nil or attrs.same(d.from, {})) then
      forced[#forced + 1] = d.name .. "(set by the destination module)"
    elseif unrecorded[d.name] and blank(d.to) then
      forced[#forced + 1] = d.name .. "(not recorded by the module)"
    elseif src_unrecorded[d.name] and blank(d.from) then
      forced[#forced + 1] = d.name .. "(not recorded by the source's module)"
    else
      bad[#bad + 1] = ("%s: %s on the source, %s on the destination"):format(d.name,
        attrs.show(d.from), attrs.show(d.to))
      entries[#entries + 1] = d
    end
  end
  return forced, bad, entries
end

--- A change replicated (a blue/green sync): dst_obj, proven to hold src_obj's key, takes
--- src_obj's attributes where they differ and no module quirk explains it. Returns the
--- names set and the sentences of the differences the destination module refused to set.
function M.reconcile(src, src_obj, dst, dst_obj)
  local plan = {dst_quirks = attrs.quirks(dst), src_quirks = attrs.quirks(src)}
  local _, _, entries = classify(plan, {a = attrs.capture(src_obj)}, attrs.capture(dst_obj))
  local set, refused = {}, {}
  for _, d in ipairs(entries) do
    local ok, err = dst_obj:set({[d.name] = d.from})
    if ok then set[#set + 1] = d.name
    else refused[#refused + 1] = ("%s (%s)"):format(d.name, tostring(err)) end
  end
  return set, refused
end

--- For a planned item already on the destination (strategy skip): its attribute
--- differences that no module quirk explains (sentences; empty when none). Read-only.
function M.differences(plan, it)
  local _, bad = classify(plan, it, attrs.capture(it.dst))
  return bad
end

local function settle(plan, it, d_obj, ours)
  local unrecorded = (plan.dst_quirks or {}).unrecorded or {}
  local src_unrecorded = (plan.src_quirks or {}).unrecorded or {}
  local got = attrs.capture(d_obj)
  local fix = {}
  for _, d in ipairs(attrs.diff(it.a, got)) do
    -- Only an object this migration made is corrected; one that was there before is not ours
    -- to change (a difference then fails the item).
    if ours and not d.forced and not unrecorded[d.name] and d.from ~= nil and
       not (src_unrecorded[d.name] and blank(d.from)) then fix[d.name] = d.from end
  end
  if next(fix) then
    for name, v in pairs(fix) do d_obj:set({[name] = v}) end   -- best effort; diffed below
    got = attrs.capture(d_obj)
  end
  local forced, bad = classify(plan, it, got)
  if #bad > 0 then error("attributes differ: " .. table.concat(bad, "; "), 0) end
  local check = check_of(d_obj, got, nil)
  if it.a.CKA_CLASS == "CKO_PRIVATE_KEY" and not check then check = it.check end
  if it.check and check and check ~= it.check then
    error(("check value differs: %s on the source, %s on the destination"):format(it.check, check), 0)
  end
  local how = plan.prove(it, d_obj)
  if it.check and not check and how:find("only", 1, true) then
    error("cannot verify: the destination gives no check value and the key allows no operation", 0)
  end
  return {forced = forced, verified = how}
end

-- Objects on the destination with this item's class, ID and label that were not there
-- when the plan was made: what a failed or interrupted step may have left.
local function leftovers(plan, it)
  -- Only the attributes the object has: a data object has no CKA_ID to match on.
  local list = plan.dst:find_all({CKA_CLASS = it.a.CKA_CLASS, CKA_ID = it.a.CKA_ID,
                                  CKA_LABEL = it.a.CKA_LABEL})
  if not list then error("searching the destination after an error failed", 0) end
  return list
end

-- The unwrap template of a key, and whether it goes through a session object: on modules
-- with the quirk unwrap_via_session (hsm.attrs) the key is unwrapped as a session object and
-- copied to the token (to_token). A kill in between leaves nothing on the token (the session
-- object dies with the process); a kill inside the copy leaves what a killed C_UnwrapKey
-- would (an object without label or ID, removed on resume). Keys that could not be copied or
-- removed that way (not copyable, not destroyable, not modifiable: SoftHSM2 then refuses the
-- copy's CKA_TOKEN) are unwrapped straight into the token.
local function unwrap_template(plan, it)
  local tmpl = attrs.template(it.a, "unwrap", plan.dst_quirks)
  local via = (plan.dst_quirks or {}).unwrap_via_session and tmpl.CKA_TOKEN == true
    and tmpl.CKA_COPYABLE ~= false and tmpl.CKA_DESTROYABLE ~= false and tmpl.CKA_MODIFIABLE ~= false
  if via then tmpl.CKA_TOKEN = false end
  it.via_session = via
  return tmpl, via
end

-- The token object copied from a session object just unwrapped (obj, or nil, err, code); the
-- session object goes in either case.
local function to_token(sobj)
  local obj, err, code = sobj:copy({CKA_TOKEN = true})
  sobj:destroy()
  if not obj then return nil, "copy to the token: " .. tostring(err), code end
  return obj
end

local function create(plan, it)
  local t = plan.transport
  if it.strategy == "copy" then
    return plan.dst:create(attrs.template(it.a, "create", plan.dst_quirks))
  end
  local blob, err, code = it.blob or (it.load_blob and it.load_blob()), nil, nil
  if not blob then blob, err, code = t.wrap(it.obj) end
  if not blob then return nil, "wrap on the source: " .. tostring(err), code end
  local tmpl, via = unwrap_template(plan, it)
  local obj, uerr, ucode = t.unwrap(blob, tmpl)
  if obj and via then return to_token(obj) end
  return obj, uerr, ucode
end

local function event(it)
  return {event = "key", ref = it.ref, label = it.a.CKA_LABEL or "", id = hex(it.a.CKA_ID or ""),
          class = SHORT[it.a.CKA_CLASS], kcv = it.a.CKA_CLASS == "CKO_SECRET_KEY" and it.check or nil,
          fingerprint = it.a.CKA_CLASS ~= "CKO_SECRET_KEY" and it.check or nil}
end

-- Before an item's object is made: what an interrupted run left and was proven ours goes
-- (plan_items), and the intent is journaled with the check value the object will have, the
-- proof a resume needs (synced unless lazy: a batch syncs its last intent for all).
local function begin(plan, it, journal, lazy)
  for _, left in ipairs(it.redo or {}) do
    journal({event = "step", ref = it.ref, step = "destroy-partial"})
    left:destroy()
  end
  it.redo = nil
  journal({event = "step", ref = it.ref, step = "create", check = it.check}, lazy)
end

-- After the attempt to make an item's object (obj, or err and code): recovery of what a
-- failed call may have made, attribute settling and verification. Returns the event.
local function finish(plan, it, journal, obj, err, code)
  local ev = event(it)
  local ok, res = pcall(function()
    if not obj then
      -- The module said no; it may still have made (part of) the object. Only what holds
      -- this key is touched; anything else under its ref is named and left.
      local found = provenance.sort(leftovers(plan, it), it.check and {[it.check] = true} or {},
        {prove = function(o) return proves(plan, it, o) end})
      for _, left in ipairs(found.ours) do
        -- Unwrapped into a session object (unwrap_via_session): what the failed call made
        -- goes to the token like a good one, and is checked as any other leftover.
        if it.via_session and left:get("CKA_TOKEN") == false then left = to_token(left) end
        local sok, r = false, nil
        if left then sok, r = pcall(settle, plan, it, left, true) end
        if sok then
          r.status, r.recovered = "migrated", ("the module reported %s but the key was created"):format(code or err)
          return r
        end
        if left then
          journal({event = "step", ref = it.ref, step = "destroy-partial"})
          left:destroy()
        end
      end
      local other = found.foreign[1] or found.unproven[1]
      if other then
        err = ("%s; left in place: an object under this class, ID and label that cannot be proven "
          .. "to be this key (%s)"):format(tostring(err), other.detail)
      end
      error(tostring(err), 0)
    end
    local sok, r = pcall(settle, plan, it, obj, true)
    if not sok then
      journal({event = "step", ref = it.ref, step = "destroy-mismatch"})
      obj:destroy()
      error(r, 0)
    end
    r.status = "migrated"
    return r
  end)
  if ok then
    ev.status, ev.verified, ev.recovered = res.status, res.verified, res.recovered
    if #res.forced > 0 then ev.differs = table.concat(res.forced, ",") end
  else
    ev.status, ev.reason = "failed", tostring(res)
  end
  journal({event = "step", ref = it.ref, step = "done", status = ev.status}, true)
  return ev
end

--- Runs one item (wrap or copy, or settle one found on the destination). Returns the event.
local function run_item(plan, it, journal)
  if it.strategy == "blocked" or it.strategy == "conflict" or it.strategy == "unproven" then
    local ev = event(it)
    ev.status, ev.reason = it.strategy == "unproven" and "failed" or "blocked", it.reason
    return ev
  end
  if it.strategy == "skip" then
    local ev = event(it)
    local ours = plan.inflight[it.ref]
    local ok, r = pcall(settle, plan, it, it.dst, ours)
    if not ok and ours and it.a.CKA_EXTRACTABLE ~= false then
      -- Ours, from an interrupted run, and not right (a module killed halfway through
      -- writing it, e.g. an EC key without its CKA_EC_PARAMS yet): made again.
      journal({event = "step", ref = it.ref, step = "destroy-partial"})
      it.dst:destroy()
      local bok, err = pcall(begin, plan, it, journal)
      if not bok then return finish(plan, it, journal, nil, err) end
      return finish(plan, it, journal, create(plan, it))
    end
    if not ok then
      ev.status, ev.reason = "failed", tostring(r)
    else
      ev.status, ev.verified = ours and "migrated" or "skipped", r.verified
      ev.recovered = ours and "found on the destination after an interrupted run" or nil
      if #r.forced > 0 then ev.differs = table.concat(r.forced, ",") end
    end
    journal({event = "step", ref = it.ref, step = "done", status = ev.status}, true)
    return ev
  end
  local ok, err = pcall(begin, plan, it, journal)
  if not ok then return finish(plan, it, journal, nil, err) end
  return finish(plan, it, journal, create(plan, it))
end

-- Keys to wrap, a chunk at a time: wrapped here, unwrapped by the transport's worker
-- threads (one session each), then settled and verified here. Other items run one by one.
local function run_batch(plan, items, journal, on_event)
  local t = plan.transport
  local jobs, batch = {}, {}
  for _, it in ipairs(items) do
    local ok, err = pcall(begin, plan, it, journal, true)
    local blob, werr, code
    if ok then
      blob, werr, code = it.blob or (it.load_blob and it.load_blob()), nil, nil
      if not blob then blob, werr, code = t.wrap(it.obj) end
    else
      werr = err
    end
    if blob then
      jobs[#jobs + 1] = {blob, (unwrap_template(plan, it))}
      batch[#batch + 1] = it
    else
      on_event(finish(plan, it, journal, nil, "wrap on the source: " .. tostring(werr), code))
    end
  end
  if #jobs == 0 then return end
  journal({event = "batch", keys = #jobs})   -- synced: every intent above is on disk now
  local results = t.unwrap_batch(jobs)
  for i, it in ipairs(batch) do
    local r = results[i]
    if r[1] and it.via_session then r = {to_token(r[1])} end
    on_event(finish(plan, it, journal, r[1], r[2], r[3]))
  end
end

--- Raises when the plan has conflicts, naming the first few and why; nothing is written.
function M.refuse_conflicts(plan)
  if plan.conflicts == 0 then return end
  local named = {}
  for _, it in ipairs(plan.items) do
    if it.strategy == "conflict" and #named < 5 then named[#named + 1] = it.ref .. ": " .. it.reason end
  end
  error(("%d conflict(s), nothing was written:\n  %s%s"):format(plan.conflicts,
    table.concat(named, "\n  "), plan.conflicts > #named and "\n  ..." or ""), 0)
end

--- Applies a plan. opts: {journal = function(ev), on_item = function(event), workers = N,
--- resumed = true when continuing a journal that already holds the "destination" event}.
--- With workers > 1 and a transport that unwraps in parallel (t.unwrap_batch), keys go in
--- chunks through the transport's worker sessions. Refuses to start when the plan has
--- conflicts. Returns the summary {migrated=, skipped=, blocked=, failed=}.
function M.apply(plan, opts)
  opts = opts or {}
  M.refuse_conflicts(plan)
  local journal = opts.journal or function() end
  plan.dst_quirks = plan.dst_quirks or attrs.quirks(plan.dst)
  local sum = {migrated = 0, skipped = 0, blocked = 0, failed = 0}
  if not opts.resumed then journal({event = "destination", counts = plan.dst_counts}) end
  for _, obj in ipairs(plan.strays or {}) do
    -- What a killed C_UnwrapKey had made before finishing it, proven by the key it holds.
    journal({event = "step", step = "destroy-stray"})
    obj:destroy()
    sum.removed = (sum.removed or 0) + 1
  end
  sum.left = #(plan.unproven or {}) > 0 and plan.unproven or nil
  local function on_event(ev)
    sum[ev.status] = sum[ev.status] + 1
    if opts.on_item then opts.on_item(ev) end
  end
  local parallel = (opts.workers or 1) > 1 and plan.transport and plan.transport.unwrap_batch
  local chunk = {}
  local function flush()
    if #chunk > 0 then run_batch(plan, chunk, journal, on_event) end
    chunk = {}
  end
  for _, it in ipairs(plan.items) do
    if parallel and it.strategy == "wrap" then
      chunk[#chunk + 1] = it
      if #chunk >= 16 * opts.workers then flush() end
    else
      on_event(run_item(plan, it, journal))
    end
  end
  flush()
  return sum
end

--- Applies a plan inside a recipe: a progress bar, one "key" event per object (FAILED lines
--- on the terminal), a final "summary" event, and ctx.status = 1 when any object failed.
--- what: the progress bar's label; opts as apply's. Returns the summary.
function M.apply_reported(ctx, plan, what, opts)
  local bar = ctx.progress(#plan.items, what)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.journal = o.journal or ctx.journal
  o.on_item = function(ev)
    bar.tick()
    ev.event, ev.ref, ev._order = "key", nil, {"event", "label", "id", "status", "reason", "kcv"}
    ctx.emit(ev)
    if ev.status == "failed" then ctx.say("FAILED %s/%s: %s", ev.class or "", ev.label, ev.reason) end
  end
  local ok, sum = pcall(M.apply, plan, o)
  bar.done()
  if not ok then error(sum, 0) end
  local left = sum.left
  sum.left = left and #left or nil
  for _, u in ipairs(left or {}) do
    ctx.say("LEFT %s: appeared on the destination during the interrupted run and cannot be proven "
      .. "to be one of its keys (%s); remove it if it is not yours", tostring(u.obj), u.detail)
  end
  sum.event, sum._order = "summary", {"event", "migrated", "skipped", "blocked", "failed"}
  ctx.emit(sum)
  if sum.failed > 0 or left then ctx.status = 1 end
  return sum
end

return M
