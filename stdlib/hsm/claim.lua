--- hsm.claim: a run's exclusive claim on a token it writes, so that two runs never write one
--- token at once (two migrations into green, a resume beside the live run, two restores).
---
---   local c = claim.take(session, token_info, {wait=, recipe=, journal_path=, journal=, say=})
---   c:renew()     -- cheap; extends the lease when a third of it has passed, raises if lost
---   c:release()
---
--- Two layers, both taken before the first write:
---  1. A local lock: flock on $HSMSH_LOCK_DIR/<token>.lock (default /tmp/hsmsh-locks). It
---     excludes every other hsmsh process of this machine, and the kernel drops it when its
---     holder dies, so a lock that can be taken proves the last holder gone.
---  2. A lease on the token itself, for machines that share a network HSM: a public CKO_DATA
---     token object (application "hsmsh-lease") holding the holder's host, pid, boot id,
---     process start time, recipe, journal and expiry, renewed while the run goes on. PKCS#11
---     has no compare-and-swap, so a claimant creates its lease and then lists the leases:
---     it wins only when it sees no other live one. Two claimants cannot both win (the one
---     that listed first had created first, so the later one sees it); when both see each
---     other, both withdraw and retry after a random pause.
--- A lease is stale only when that is proven: its holder is on this machine (same host and
--- boot) and its process is gone (or the pid now belongs to another process), or its expiry
--- has passed. A stale lease is removed and the run's journal records the takeover. A lease
--- that cannot be read is never removed: the claim is refused, naming it.
local core = require("hsm.core")
local json = require("hsm.json")
local keys = require("hsm.keys")

local M = {}

M.APPLICATION = "hsmsh-lease"

--- Whether captured attributes are a lease object (left out of migrations and archives).
function M.is_lease(a)
  return a.CKA_CLASS == "CKO_DATA" and a.CKA_APPLICATION == M.APPLICATION
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- HSMSH_HOST stands for the host name where several "machines" share one (tests, containers).
local function host() return os.getenv("HSMSH_HOST") or core.process().host end
local function boot_id() return (read_file("/proc/sys/kernel/random/boot_id") or ""):gsub("%s+", "") end
-- A process's start time (clock ticks since boot): with the boot id, it tells a pid reused.
local function start_of(pid)
  local stat = read_file(("/proc/%d/stat"):format(pid))
  local rest = stat and stat:match("%)%s+(.*)$")
  if not rest then return nil end
  local n = 2   -- fields after ")" start at field 3; starttime is field 22
  for field in rest:gmatch("%S+") do
    n = n + 1
    if n == 22 then return field end
  end
end
local function ttl() return tonumber(os.getenv("HSMSH_LEASE_TTL")) or 600 end

local function lock_dir()
  local dir = os.getenv("HSMSH_LOCK_DIR") or "/tmp/hsmsh-locks"
  local ok, err = core.mkdir(dir, tonumber("1777", 8))
  if not ok then error(("cannot make the lock directory %s"):format(err), 0) end
  return dir
end

-- A token's name for its lock: what CK_TOKEN_INFO says of it, whichever module path or
-- proxy reaches it.
local function token_key(info)
  return keys.hex(core.sha256(table.concat({info.manufacturer or "", info.model or "",
    info.serial or "", info.label or ""}, "\0"))):sub(1, 24)
end

--- One line naming a holder: "pid 812 on host vm (generic/migrate, journal /x/j, since 19:04:01 UTC)".
function M.describe(h)
  if type(h) ~= "table" then return "another process (its claim cannot be read)" end
  local parts = {}
  if h.recipe then parts[#parts + 1] = h.recipe end
  if h.journal then parts[#parts + 1] = "journal " .. h.journal end
  if tonumber(h.taken) then parts[#parts + 1] = "since " .. os.date("!%H:%M:%S UTC", h.taken) end
  return ("pid %s on host %s%s"):format(tostring(h.pid), tostring(h.host),
    #parts > 0 and (" (" .. table.concat(parts, ", ") .. ")") or "")
end

-- Why a lease's holder is provably gone, or nil.
local function stale(h, now)
  if h.host == host() and h.boot == boot_id() then
    if not core.alive(h.pid) then return ("its process %d is gone"):format(h.pid) end
    if h.start and start_of(h.pid) ~= h.start then
      return ("its process %d is gone (the pid belongs to another process now)"):format(h.pid)
    end
    return nil
  end
  if tonumber(h.expires) and h.expires < now then
    return ("its lease expired %d s ago"):format(now - h.expires)
  end
  return nil
end

local Claim = {}
Claim.__index = Claim

-- The leases on the token: {{obj=, h=<decoded or nil>}}. A failed search is an error.
local function leases(s)
  local list, err = s:find_all({CKA_CLASS = "CKO_DATA", CKA_APPLICATION = M.APPLICATION})
  if not list then error("listing the token's leases failed: " .. tostring(err), 0) end
  local out = {}
  for _, obj in ipairs(list) do
    local v, err, code = obj:get("CKA_VALUE")
    if v == nil and code then   -- (an attribute the object lacks is nil, err without a code)
      error("reading a lease on the token failed: " .. tostring(err), 0)
    end
    local h = v and json.decode(v)
    out[#out + 1] = {obj = obj, h = type(h) == "table" and h.nonce and h or nil}
  end
  return out
end

-- The live leases other than ours; stale ones are removed and the takeover journaled.
function Claim:others()
  local live, now = {}, os.time()
  for _, l in ipairs(leases(self.s)) do
    if not l.h then
      error(("token %s holds a lease object that cannot be read (%s); hsmsh does not remove "
        .. "what it cannot prove stale: check that no run is using the token, then destroy "
        .. "that object"):format(self.label, tostring(l.obj)), 0)
    elseif l.h.nonce ~= self.me.nonce then
      local why = stale(l.h, now)
      if why then
        self.journal({event = "claim-takeover", token = self.label, holder = M.describe(l.h), why = why})
        self.say(("taking over the claim on token %s from %s: %s"):format(self.label, M.describe(l.h), why))
        local ok, err = l.obj:destroy()
        if not ok then error(("cannot remove the stale lease on token %s: %s"):format(self.label, tostring(err)), 0) end
      else
        live[#live + 1] = l.h
      end
    end
  end
  return live
end

function Claim:busy(h)
  return ("token %s is in use by %s; nothing was written (give --wait to queue behind it)")
    :format(self.label, M.describe(h))
end

function Claim:write_lease()
  self.me.expires = os.time() + ttl()
  return json.encode(self.me)
end

-- Takes the lease: create ours, then list; withdraw and retry when another live one shows.
function Claim:lease(wait)
  for attempt = 1, 20 do
    local live = self:others()
    if #live > 0 then
      if not wait then error(self:busy(live[1]), 0) end
      if attempt == 1 then self.say(("waiting for %s"):format(M.describe(live[1]))) end
      core.sleep(1)
    else
      local obj, err, code = self.s:create({CKA_CLASS = "CKO_DATA", CKA_TOKEN = true,
        CKA_PRIVATE = false, CKA_LABEL = M.APPLICATION, CKA_APPLICATION = M.APPLICATION,
        CKA_VALUE = self:write_lease()})
      if not obj then
        -- A module that cannot hold token data objects (NSS) is a local token: the local
        -- lock is the whole claim there.
        self.local_only = ("token %s cannot hold a lease object (%s): the claim holds on this machine only")
          :format(self.label, tostring(code or err))
        return
      end
      self.obj = obj
      local ok, live = pcall(self.others, self)
      if ok and #live == 0 then return end
      obj:destroy()
      self.obj = nil
      if not ok then error(live, 0) end
      core.sleep(0.05 + math.random() * 0.25)   -- both saw each other: one will go first
    end
  end
  error(("token %s: could not take its lease after 20 attempts (another claimant keeps racing)"):format(self.label), 0)
end

--- Takes the claim on the token behind session s (token info from hsm.token). opts: {wait=
--- (queue behind the holder instead of refusing), recipe=, journal_path=, journal=fn(ev),
--- say=fn(line)}. Raises naming the holder when the token is in use.
local held = {}   -- token key -> claim: a run may open one token several times

function M.take(s, info, opts)
  opts = opts or {}
  local key = token_key(info)
  if held[key] then return held[key] end
  -- The claim's own session: the run may close its sessions while the claim must last.
  local own, oerr = s:module():open(s:slot(), true)
  if not own then error(("cannot open a session for the claim on token %s: %s"):format(info.label, tostring(oerr)), 0) end
  local c = setmetatable({s = own, key = key, label = info.label, journal = opts.journal or function() end,
                          say = opts.say or function() end}, Claim)
  local p = core.process()
  c.me = {v = 1, host = host(), pid = p.pid, boot = boot_id(), start = start_of(p.pid),
          user = os.getenv("USER"), recipe = opts.recipe, journal = opts.journal_path,
          token = info.label, taken = os.time(), nonce = keys.hex(assert(s:random(16)))}
  local path = lock_dir() .. "/" .. key .. ".lock"
  local lk, holder, busy = core.lock(path, json.encode(c.me))
  -- A holder writes who it is just after it takes the lock: give it a moment to do so.
  for _ = 1, 25 do
    if lk or not busy or type(json.decode(holder or "")) == "table" then break end
    core.sleep(0.02)
    lk, holder, busy = core.lock(path, json.encode(c.me))
  end
  if not lk and busy then
    local h = json.decode(holder)
    if not opts.wait then error(c:busy(type(h) == "table" and h or nil), 0) end
    c.say(("waiting for %s"):format(M.describe(type(h) == "table" and h or nil)))
    lk, holder = core.lock(path, json.encode(c.me), true)
  end
  if not lk then own:close(); error(("cannot take the lock %s"):format(tostring(holder)), 0) end
  c.lock = lk
  local ok, err = pcall(c.lease, c, opts.wait)
  if not ok then
    lk:close()
    own:close()
    error(err, 0)
  end
  if c.local_only then c.say(c.local_only) end
  c.renewed = core.now()
  held[key] = c
  return c
end

--- Extends the lease when a third of its time has passed (cheap otherwise). Raises when the
--- lease is no longer ours (removed, or taken over after it expired): the run must stop.
function Claim:renew()
  if not self.obj or core.now() - self.renewed < ttl() / 3 then return end
  local v = self.obj:get("CKA_VALUE")
  local h = v and json.decode(v)
  if type(h) ~= "table" or h.nonce ~= self.me.nonce then
    error(("the claim on token %s was lost (its lease is gone or another run took it over); "
      .. "stopping"):format(self.label), 0)
  end
  local ok, err = self.obj:set({CKA_VALUE = self:write_lease()})
  if not ok then error(("cannot renew the lease on token %s: %s"):format(self.label, tostring(err)), 0) end
  self.renewed = core.now()
end

--- Gives the claim up: our lease goes (only when it is still ours), then the lock.
function Claim:release()
  if self.obj then
    local v = self.obj:get("CKA_VALUE")
    local h = v and json.decode(v)
    if type(h) == "table" and h.nonce == self.me.nonce then self.obj:destroy() end
    self.obj = nil
  end
  if self.lock then self.lock:close(); self.lock = nil end
  if held[self.key] == self then held[self.key] = nil end
  self.s:close()
end

return M
