-- hsm.sks on real SoftHSM2 tokens (seed 004): blobs extracted under the SMK and inserted
-- back, the 64 KB limit, tampered blobs refused, the SMK backed up into a new container and
-- restored onto a fresh token that then inserts a blob extracted before.
local hsm = require("hsm")
local sks = require("hsm.sks")
local H = require("spec.helper")

local function key(s, label, bits)
  return assert(s:generate{type = "AES", bits = bits or 256, token = false, label = label,
                           CKA_EXTRACTABLE = true, CKA_ENCRYPT = true, CKA_DECRYPT = true})
end

describe("SKS blobs", function()
  it("extract and insert keys as session objects with their attributes", function()
    local s <close> = hsm.token(H.new_token("sks"))
    local smk = sks.smk(s)
    assert.equal(smk:handle(), sks.smk(s):handle())   -- made once
    local k1, k2 = key(s, "k1"), key(s, "k2", 128)
    local pub, priv = assert(s:generate{type = "EC", curve = "P-256", token = false, label = "ec",
                                        CKA_EXTRACTABLE = true})
    local blobs = sks.extract(s, smk, {k1, k2, priv})
    assert.equal(1, #blobs)
    assert.truthy(#blobs[1] <= 64 * 1024)
    local objs = sks.insert(s, smk, blobs[1])
    assert.equal(3, #objs)
    assert.equal(k1:kcv(), objs[1]:kcv())
    assert.equal("k2", objs[2].label)
    assert.is_false(objs[1]:get("CKA_TOKEN"))
    local sig = assert(s:sign("CKM_ECDSA", objs[3], ("\1"):rep(32)))
    assert.is_true(s:verify("CKM_ECDSA", pub, ("\1"):rep(32), sig))
  end)

  it("splits large groups across blobs of at most 64 KB", function()
    local s <close> = hsm.token(H.new_token("sks-big"))
    local smk = sks.smk(s)
    local list = {}
    for i = 1, 40 do
      local _, priv = assert(s:generate{type = "RSA", bits = 1024, token = false, label = "r" .. i,
                                        CKA_EXTRACTABLE = true})
      list[i] = priv
    end
    local blobs = sks.extract(s, smk, list)
    assert.truthy(#blobs >= 2)
    local n = 0
    for _, b in ipairs(blobs) do
      assert.truthy(#b <= 64 * 1024)
      n = n + #sks.insert(s, smk, b)
    end
    assert.equal(40, n)
  end)

  it("refuses altered, truncated and foreign blobs before creating anything", function()
    local s <close> = hsm.token(H.new_token("sks-bad"))
    local smk = sks.smk(s)
    local blob = sks.extract(s, smk, {key(s, "k")})[1]
    local before = #assert(s:find_all({}))
    for _, bad in ipairs({blob:sub(1, 200) .. string.char(blob:byte(201) ~ 4) .. blob:sub(202),
                          blob:sub(1, -2), blob:sub(1, 30), "HSMSKS01", "not a blob at all........................................"}) do
      local ok, err = pcall(sks.insert, s, smk, bad)
      assert.is_false(ok)
      assert.matches("SKS blob", err)
    end
    local other <close> = hsm.token(H.new_token("sks-other"))
    local ok, err = pcall(sks.insert, other, sks.smk(other), blob)
    assert.is_false(ok)
    assert.matches("made under the SMK of KCV", err)
    assert.equal(before, #assert(s:find_all({})))
  end)
end)

describe("SMK backup and restore", function()
  it("restores the SMK onto a fresh token that then inserts a blob extracted before", function()
    local s <close> = hsm.token(H.new_token("sks-src"))
    local backup <close> = hsm.token(H.new_token("sks-backup"))
    local smk = sks.smk(s)
    local k = key(s, "payload")
    local blob = sks.extract(s, smk, {k})[1]
    local name = sks.backup_smk(s, smk, backup)
    assert.matches("^%w+_%d%d%d%d:%d%d:%d%d%-%d%d:%d%d:%d%d$", name)
    -- A second backup in the same second names the same container: refused, never overwritten.
    -- (The clock is pinned so that the second call is in the same second.)
    local real_date = os.date
    os.date = function(fmt) return real_date(fmt, 86400) end
    local first = sks.backup_smk(s, smk, backup)
    local before = #assert(backup:find_all({CKA_LABEL = first}))
    local ok, err = pcall(sks.backup_smk, s, smk, backup)
    os.date = real_date
    assert.is_false(ok)
    assert.matches("container " .. first:gsub("%p", "%%%0") .. " already exists", err)
    assert.equal(before, #assert(backup:find_all({CKA_LABEL = first})))
    local fresh <close> = hsm.token(H.new_token("sks-fresh"))
    local warned = {}
    sks.restore_smk(backup, name, fresh, nil, function() return true end, function(w) warned[#warned + 1] = w end)
    assert.equal(0, #warned)
    local objs = sks.insert(fresh, sks.smk(fresh, nil, false), blob)
    assert.equal(k:kcv(), objs[1]:kcv())
  end)

  it("overwrites an existing SMK only when confirmed, and warns about other objects", function()
    local s <close> = hsm.token(H.new_token("sks-a"))
    local backup <close> = hsm.token(H.new_token("sks-b"))
    local name = sks.backup_smk(s, sks.smk(s), backup)
    assert(backup:create{CKA_CLASS = "CKO_DATA", CKA_TOKEN = true, CKA_LABEL = name, CKA_VALUE = "x"})
    local target <close> = hsm.token(H.new_token("sks-c"))
    local old = sks.smk(target)
    local blob = sks.extract(target, old, {key(target, "t")})[1]
    local warned = {}
    local ok, err = pcall(sks.restore_smk, backup, name, target, nil, function() return false end,
                          function(w) warned[#warned + 1] = w end)
    assert.is_false(ok)
    assert.matches("without confirmation", err)
    assert.matches("holds 1 other object", warned[1])
    assert.equal(1, #sks.insert(target, sks.smk(target, nil, false), blob))   -- still the old SMK
    sks.restore_smk(backup, name, target, nil, function() return true end, function() end)
    local ok2 = pcall(sks.insert, target, sks.smk(target, nil, false), blob)
    assert.is_false(ok2)                                                        -- now the restored one
    assert.equal(1, #assert(target:find_all({CKA_LABEL = "hsmsh-smk"})))
  end)
end)
