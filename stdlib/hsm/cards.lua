--- hsm.cards: custodians' smart cards (any PKCS#11 token) as a store for exactly the bytes a
--- share file or an archive file holds today (docs/cards.md). A card's part is a set of
--- private CKO_DATA objects (CKA_APPLICATION "hsmsh"): chunks, then a completion record
--- written last, so that a card pulled mid-write is recognised as half-written. Readers hand
--- the bytes to the share and archive parsers, which check them as they check files.
---
---   local c = cards.open(ctx, "card:pkcs11:token=card-1?pin-source=file:/p")
---   cards.check_blank(c, nil, ctx.yes)             -- before anything is made
---   cards.write(c, {kind=, set=, card=, cards=, data=, capacity=})
---   local part = cards.read(c, "archive")         -- {set=, card=, cards=, data=}
local core = require("hsm.core")
local json = require("hsm.json")
local keys = require("hsm.keys")
local claim = require("hsm.claim")

local M = {}

M.DEFAULT_CAPACITY = 32768
M.CHUNK = 4096             -- bytes per data object (cards limit object sizes)
local APP = "hsmsh"

--- Whether a list item names a card.
function M.is_card(item) return item:sub(1, 5) == "card:" end

--- The items of a list that may hold cards: a card item runs to the next ",card:" (a URI's
--- query may hold commas), other items end at the next comma (put files before cards).
function M.split(text) return require("hsm").split_list(text or "", "card:") end

--- Whether a parameter's value lists cards (every item must then be a card).
function M.listed(text)
  local items, n = M.split(text), 0
  for _, it in ipairs(items) do if M.is_card(it) then n = n + 1 end end
  return n > 0, items, n
end

--- A list as it may be written down: every card's URI without its PIN.
function M.shown(text)
  local out = {}
  for _, it in ipairs(M.split(text)) do
    if M.is_card(it) then
      local u = core.uri_parse(it:sub(6))
      it = "card:" .. (u and u.display or "pkcs11:(a URI that does not parse)")
    end
    out[#out + 1] = it
  end
  return table.concat(out, ",")
end

--- Opens (and logs in to) the card an item names: one PIN attempt (a card locks after a
--- few). The session closes when the run ends (ctx.defer). No claim lease is written onto a
--- card (it would take the card's memory): a card sits in one custodian's reader. Returns
--- {s=, name=, id=}; raises naming the card.
function M.open(ctx, item)
  local uri = item:sub(6)
  local u, err = core.uri_parse(uri)
  if not u then error(("card %s: %s"):format(item:sub(1, 40), err), 0) end
  local ok, s, info = pcall(require("hsm").token, uri)
  if not ok then error(("card %s: %s"):format(u.token or u.display, s), 0) end
  ctx.defer(function() s:close() end)
  return {s = s, name = info.label, id = info.manufacturer .. "\0" .. info.serial .. "\0" .. info.label,
          free = info.free_private_memory}   -- nil when the card does not say
end

--- The bytes a card takes: card_capacity, or less when the card reports less free memory.
local function room(c, capacity)
  local cap = capacity or M.DEFAULT_CAPACITY
  if c.free and c.free < cap then return c.free, ("the card reports %d bytes free"):format(c.free) end
  return cap, "card_capacity="
end

--- Appends an opened card to a list of them, refusing the same card twice.
function M.add(list, c)
  for j, other in ipairs(list) do
    if other.id == c.id then
      error(("card %s is given twice (items %d and %d)"):format(c.name, j, #list + 1), 0)
    end
  end
  list[#list + 1] = c
  return c
end

--- Opens every card of a list, refusing the same card twice.
function M.open_all(ctx, items)
  local out = {}
  for i, it in ipairs(items) do
    if not M.is_card(it) then error(("item %d is not a card: give every one as card:URI"):format(i), 0) end
    M.add(out, M.open(ctx, it))
  end
  return out
end

local function label(p, chunk, chunks)
  local head = ("hsmsh %s %s card %d of %d"):format(p.kind, p.set, p.card, p.cards)
  return chunk and ("%s chunk %d of %d"):format(head, chunk, chunks) or head .. " complete"
end

local function describe(a)
  return ("%s '%s'"):format(tostring(a.CKA_CLASS):gsub("^CKO_", ""):lower(), tostring(a.CKA_LABEL or ""))
end

--- What a card holds: {parts = {["KIND SET"] = {kind=, set=, card=, cards=, chunks={[j]=obj},
--- nchunks=, done=obj|nil}}, foreign = {descriptions}, objects = {every object}}.
function M.inventory(c)
  local list, err = c.s:find_all({})
  if not list then error(("card %s: cannot list its objects: %s"):format(c.name, err), 0) end
  local inv = {parts = {}, foreign = {}, objects = list}
  for _, o in ipairs(list) do
    local a = {CKA_CLASS = o:get("CKA_CLASS"), CKA_LABEL = o:get("CKA_LABEL"), CKA_APPLICATION = o:get("CKA_APPLICATION")}
    if claim.is_lease(a) then goto next end   -- another run's claim on the token, not content
    local kind, set, i, n, rest = tostring(a.CKA_LABEL):match("^hsmsh (%a+) (%x+) card (%d+) of (%d+) (.*)$")
    if a.CKA_CLASS == "CKO_DATA" and a.CKA_APPLICATION == APP and kind then
      local key = kind .. " " .. set
      local p = inv.parts[key] or {kind = kind, set = set, card = tonumber(i), cards = tonumber(n), chunks = {}}
      inv.parts[key] = p
      local j, k = rest:match("^chunk (%d+) of (%d+)$")
      if j then p.chunks[tonumber(j)], p.nchunks = o, tonumber(k)
      elseif rest == "complete" then p.done = o
      else inv.foreign[#inv.foreign + 1] = describe(a) end
    else
      inv.foreign[#inv.foreign + 1] = describe(a)
    end
    ::next::
  end
  return inv
end

local function what(p) return ("%s card %d of %d of set %s"):format(p.kind, p.card, p.cards, p.set) end

--- Refuses a card that is not blank. Allowed, with yes (--yes): an earlier part of the same
--- set (nil: none is known yet), or a half-written part; write removes them. Never: anything
--- not written by hsmsh, or a complete part of another set (a share or archive handed out).
function M.check_blank(c, set, yes)
  local inv = M.inventory(c)
  if #inv.foreign > 0 then
    error(("card %s is not blank: it holds %d object(s) not written by hsmsh (%s); hsmsh writes only onto blank cards")
      :format(c.name, #inv.foreign, table.concat(inv.foreign, ", ", 1, math.min(#inv.foreign, 5))), 0)
  end
  c.replace = {}
  for key, p in pairs(inv.parts) do
    if p.done and p.set ~= set then
      error(("card %s holds %s: replacing it would invalidate what its custodian was handed; " ..
        "erase the card deliberately first"):format(c.name, what(p)), 0)
    end
    if not yes then
      error(("card %s holds %s%s; it is replaced only with --yes"):format(c.name,
        p.done and "an earlier copy of " or "a half-written ", what(p)), 0)
    end
    c.replace[key] = true
  end
end

-- Destroys objects (those already destroyed are skipped); stops at the first failure.
local function destroy_all(objs)
  for _, o in ipairs(objs) do
    local live, ok, err = pcall(o.handle, o)
    if live then ok, err = o:destroy() end
    if live and not ok then return nil, err end
  end
  return true
end

local function fail_write(c, made, err, code)
  local removed = destroy_all(made)
  local hint = code == "CKR_DEVICE_MEMORY" and "; the card is full: give a smaller card_capacity= or more cards" or ""
  if removed then
    error(("card %s: %s%s; nothing was kept on it"):format(c.name, err, hint), 0)
  end
  error(("card %s: %s%s; the card is half-written (a restore refuses it): erase it and back up again")
    :format(c.name, err, hint), 0)
end

--- Writes one part onto a card checked by check_blank. p: {kind="share"|"archive", set=hex,
--- card=i, cards=n, data=string|hsm.Secret, capacity=}. A string is cut into M.CHUNK-byte
--- objects, a secret is one object. Read back before it counts. Returns {objects=, bytes=}.
function M.write(c, p)
  local cap, why = room(c, p.capacity)
  if #p.data > cap then
    error(("card %s: %d bytes do not fit its capacity of %d (%s)"):format(c.name, #p.data, cap, why), 0)
  end
  if c.replace then   -- what check_blank allowed to replace, as the card holds it now
    local old = {}
    for key, part in pairs(M.inventory(c).parts) do
      if c.replace[key] then
        for _, o in pairs(part.chunks) do old[#old + 1] = o end
        if part.done then old[#old + 1] = part.done end
      end
    end
    local ok, err = destroy_all(old)
    if not ok then error(("card %s: cannot remove its earlier part: %s"):format(c.name, err), 0) end
  end
  local pieces = {p.data}
  if type(p.data) == "string" then
    pieces = {}
    for at = 1, math.max(#p.data, 1), M.CHUNK do pieces[#pieces + 1] = p.data:sub(at, at + M.CHUNK - 1) end
  end
  local made = {}
  local function put(lbl, value)
    local o, err, code = c.s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_PRIVATE = true,
      CKA_MODIFIABLE = false, CKA_APPLICATION = APP, CKA_LABEL = lbl, CKA_VALUE = value})
    if not o then fail_write(c, made, err, code) end
    made[#made + 1] = o
    c.written = made
    return o
  end
  for j, piece in ipairs(pieces) do put(label(p, j, #pieces), piece) end
  local record = {format = "hsmsh-card", version = 1, kind = p.kind, set = p.set, card = p.card,
                  cards = p.cards, chunks = #pieces, bytes = #p.data}
  if type(p.data) == "string" then record.sha256 = keys.hex(core.sha256(p.data)) end
  put(label(p), json.encode(record))
  -- Read back: a part that does not read back is no part.
  local ok, back = pcall(M.read, c, p.kind)
  local same = ok and back.set == p.set and (type(p.data) == "string" and back.data == p.data
    or type(p.data) ~= "string" and core.secret_equal(back.data, p.data))
  if ok and type(back.data) ~= "string" then back.data:close() end
  if not same then fail_write(c, made, "it does not read back: " .. tostring(ok and "other bytes" or back)) end
  return {objects = #made, bytes = #p.data}
end

--- Removes what write put on a card in this run (a backup that failed after it: the card
--- goes back to blank, as it was). Returns true, or nil and why.
function M.undo(c)
  local ok, err = destroy_all(c.written or {})
  c.written = nil
  return ok, err
end

--- Reads the one hsmsh part of kind on a card. Returns {kind=, set=, card=, cards=, data=}
--- (data: a string for an archive, an hsm.Secret for a share); raises naming the card when
--- it holds none, several, or a half-written one.
function M.read(c, kind)
  local inv = M.inventory(c)
  local found
  for _, p in pairs(inv.parts) do
    if p.kind == kind then
      if found then error(("card %s holds parts of two sets (%s, %s)"):format(c.name, found.set, p.set), 0) end
      found = p
    end
  end
  if not found then error(("card %s holds no hsmsh %s"):format(c.name, kind), 0) end
  local p = found
  local rec = p.done and json.decode(p.done:get("CKA_VALUE") or "")
  local n = 0
  for _ in pairs(p.chunks) do n = n + 1 end
  if type(rec) ~= "table" or rec.format ~= "hsmsh-card" or rec.chunks ~= n or rec.set ~= p.set then
    error(("card %s is half-written: %s has %d of %s chunks and %s; its write was interrupted " ..
      "(the card was pulled?): use the set's other cards or back up again"):format(c.name, what(p), n,
      tostring(p.nchunks or "?"), p.done and "a damaged completion record" or "no completion record"), 0)
  end
  local out = {kind = kind, set = p.set, card = p.card, cards = p.cards, objects = n + 1}
  if kind == "share" then
    local sec, err = p.chunks[1]:get_secret("CKA_VALUE")
    if not sec then error(("card %s: cannot read its share: %s"):format(c.name, err), 0) end
    out.data = sec
  else
    local parts = {}
    for j = 1, n do
      local v = p.chunks[j] and p.chunks[j]:get("CKA_VALUE")
      if not v then error(("card %s: chunk %d of %s cannot be read"):format(c.name, j, what(p)), 0) end
      parts[j] = v
    end
    out.data = table.concat(parts)
    if #out.data ~= rec.bytes or keys.hex(core.sha256(out.data)) ~= rec.sha256 then
      error(("card %s: %s is altered (its bytes do not match its completion record)"):format(c.name, what(p)), 0)
    end
  end
  return out
end

-- ------------------------------------------------------------------ archives over cards

--- The set id of an archive's bytes (the same archive, the same set).
function M.archive_set(data) return keys.hex(core.sha256(data)):sub(1, 32) end

--- Spreads an archive's bytes over opened, blank-checked cards (as many as it needs, at most
--- capacity bytes each). more(i, need), if given, is asked for card i when the list is short
--- (the operator at a terminal): it appends a card to list, or returns nil. Returns a list of
--- {name=, card=, cards=, objects=, bytes=}.
function M.put_archive(list, data, set, capacity, more)
  capacity = capacity or M.DEFAULT_CAPACITY
  local why = "card_capacity="
  for _, c in ipairs(list) do
    local r, w = room(c, capacity)
    if r < capacity then capacity, why = r, w end
  end
  local need = math.max(1, (#data + capacity - 1) // capacity)
  while more and #list < need and more(#list + 1, need) do end
  if need > #list then
    error(("the archive is %d bytes: it needs %d cards of %d bytes (%s), %d given")
      :format(#data, need, capacity, why, #list), 0)
  end
  local size, out = (#data + need - 1) // need, {}
  for i = 1, need do
    local c = list[i]
    local r = M.write(c, {kind = "archive", set = set, card = i, cards = need, capacity = capacity,
                          data = data:sub((i - 1) * size + 1, i * size)})
    out[#out + 1] = {name = c.name, card = i, cards = need, objects = r.objects, bytes = r.bytes}
  end
  return out
end

--- An archive's bytes from its cards, given in any order. Refuses a card of another set, a
--- card of the set twice, and names the missing ones.
function M.get_archive(list)
  local by, first = {}, nil
  for _, c in ipairs(list) do
    local p = M.read(c, "archive")
    p.name = c.name
    first = first or p
    if p.set ~= first.set or p.cards ~= first.cards then
      error(("card %s holds card %d of %d of archive set %s, not of set %s (card %s's)"):format(c.name,
        p.card, p.cards, p.set, first.set, first.name), 0)
    end
    if by[p.card] then
      error(("cards %s and %s both hold card %d of %d of set %s"):format(by[p.card].name, c.name,
        p.card, p.cards, p.set), 0)
    end
    by[p.card] = p
  end
  local missing, parts = {}, {}
  for i = 1, first.cards do
    if by[i] then parts[i] = by[i].data else missing[#missing + 1] = tostring(i) end
  end
  if #missing > 0 then
    error(("archive set %s spans %d cards: card %s of %d missing"):format(first.set, first.cards,
      table.concat(missing, ", "), first.cards), 0)
  end
  return table.concat(parts), first, by
end

return M
