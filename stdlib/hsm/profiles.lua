--- hsm.profiles: what a PKCS#11 module supports or does differently, as data. A profile is
--- chosen by the token (CK_TOKEN_INFO manufacturer and model), then the slot, then the
--- library (C_GetInfo), so that it holds behind p11-kit-proxy, whose C_GetInfo always says
--- "PKCS#11 Kit". Every entry is checked on the real module by
--- tests/integration/modules_profiles.sh, which fails when an entry is removed or wrong.
---
--- Fields of a profile:
---   match               list of {token = {manufacturer=, model=}} | {slot = {...}} | {library = {...}};
---                       each given field must equal the module's (trailing blanks trimmed)
---   unwrap_drop         attributes to leave out of an unwrap template (the module refuses them)
---   unwrap_keep         FROM_BLOB attributes to keep in an unwrap template (hsm.attrs)
---   unrecorded          attributes the module reads as 0 or empty after an unwrap
---   unwrap_via_session  unwrap into a session object and copy it to the token (speed)
---   unsupported         {CKA_X = "CKR_..."}: attributes a key or certificate template may
---                       not carry, with the return code the module gives (C_GenerateKey
---                       of an AES key, C_CreateObject of a token X.509 certificate)
---   no_token_data       "CKR_...": token CKO_DATA objects are refused with that code
---   no_secret_keygen    "CKR_...": C_GenerateKey of a secret key fails so, whatever the
---                       mechanism list says
---   no_public_data      "CKR_...": token CKO_DATA objects with CKA_PRIVATE=false are refused
---   public_key_types    {CKK_X = true}: the only public-key types C_CreateObject accepts
---   persists_session_objects  true: objects made with CKA_TOKEN=false outlive their session
---   imposes             {CKA_X = true}: attributes the module sets on an object whose
---                       template has none (reported as differing, not failed)
local M = {}

local KEEP_VALUE_LEN = {CKA_VALUE_LEN = true}

M.PROFILES = {
  {name = "softhsm2",
   match = {{token = {manufacturer = "SoftHSM project", model = "SoftHSM v2"}},
            {library = {manufacturer = "SoftHSM"}}},
   -- SoftHSM2 2.6 refuses CKA_VALUE_LEN in an unwrap template (CKR_ATTRIBUTE_READ_ONLY) and
   -- then does not record it: an unwrapped AES or generic secret key reads CKA_VALUE_LEN = 0;
   -- nor does it record CKA_CHECK_VALUE for an unwrapped secret key (measured by the kill
   -- sweeps' oracle and the blue/green syncs).
   unwrap_drop = {CKA_VALUE_LEN = true},
   unrecorded = {CKA_VALUE_LEN = true, CKA_CHECK_VALUE = true},
   -- It rewrites a new token object's file once per default attribute in C_UnwrapKey and
   -- once in C_CopyObject: 0.37 instead of 1.28 ms per AES key (bench/archive.sh).
   unwrap_via_session = true},
  {name = "nss",
   match = {{token = {manufacturer = "Mozilla Foundation", model = "NSS 3"}},
            {library = {manufacturer = "Mozilla Foundation"}}},
   unwrap_keep = KEEP_VALUE_LEN,
   -- On token objects (a session-object unwrap with both was accepted when measured by hand).
   unsupported = {CKA_COPYABLE = "CKR_GENERAL_ERROR", CKA_DESTROYABLE = "CKR_GENERAL_ERROR",
                  CKA_NAME_HASH_ALGORITHM = "CKR_GENERAL_ERROR"},
   -- NSS 3.87 keeps no CKA_CHECK_VALUE for secret keys (reads as absent).
   unrecorded = {CKA_CHECK_VALUE = true},
   no_token_data = "CKR_ATTRIBUTE_VALUE_INVALID"},
  {name = "opencryptoki",
   match = {{token = {manufacturer = "IBM Corp.", model = "IBM SoftTok"}},
            {library = {manufacturer = "IBM", description = "Meta PKCS11 LIBRARY"}}},
   unwrap_keep = KEEP_VALUE_LEN,
   -- 3.8 refuses CKA_EXTRACTABLE and CKA_SENSITIVE=false in an unwrap template
   -- (CKR_ATTRIBUTE_READ_ONLY) and ignores CKA_SENSITIVE=true: an unwrapped key is
   -- extractable and not sensitive, and settle() then sets CKA_SENSITIVE=true where the
   -- source's is (only extractable keys travel). It records no CKA_CHECK_VALUE (secret
   -- keys, certificates).
   unwrap_drop = {CKA_EXTRACTABLE = true, CKA_SENSITIVE = true},
   unrecorded = {CKA_CHECK_VALUE = true},
   unsupported = {CKA_COPYABLE = "CKR_ATTRIBUTE_TYPE_INVALID",
                  CKA_DESTROYABLE = "CKR_ATTRIBUTE_TYPE_INVALID",
                  CKA_WRAP_WITH_TRUSTED = "CKR_ATTRIBUTE_TYPE_INVALID",
                  CKA_NAME_HASH_ALGORITHM = "CKR_ATTRIBUTE_TYPE_INVALID",
                  CKA_CERTIFICATE_CATEGORY = "CKR_ATTRIBUTE_TYPE_INVALID",
                  CKA_JAVA_MIDP_SECURITY_DOMAIN = "CKR_ATTRIBUTE_TYPE_INVALID"}},
  {name = "tpm2",
   -- The token's manufacturer and model are the TPM's (swtpm: "IBM" / "SW   TPM"), so the
   -- library decides; behind p11-kit-proxy only swtpm's model is known here.
   match = {{library = {manufacturer = "tpm2-software.github.io"}},
            {token = {manufacturer = "IBM", model = "SW   TPM"}}},
   unwrap_keep = KEEP_VALUE_LEN,
   no_secret_keygen = "CKR_FUNCTION_NOT_SUPPORTED",
   -- 1.9: "CKA_PRIVATE cannot be CK_FALSE" for data objects; "Can only create RSA Public key
   -- objects or data objects".
   no_public_data = "CKR_ATTRIBUTE_VALUE_INVALID",
   public_key_types = {CKK_RSA = true},
   -- An RSA public key it is given gets 12 allowed mechanisms.
   imposes = {CKA_ALLOWED_MECHANISMS = true},
   -- Objects made with CKA_TOKEN=false outlive their session and process: hsmsh destroys
   -- every object it makes explicitly (transports, probes, known-answer tests).
   persists_session_objects = true},
}

--- What a module with no profile gets.
M.DEFAULT = {name = "default", unwrap_keep = KEEP_VALUE_LEN}

local function fits(want, have)
  for k, v in pairs(want) do
    if (have[k] or "") ~= v then return false end
  end
  return true
end

--- The profile of a token: by its token info, then slot info, then library info (each
--- match rule of every profile is tried in that order of kinds).
---@param m userdata hsm.Module
---@param slot integer
---@return table profile
function M.find(m, slot)
  local have = {token = m:token_info(slot) or {}, slot = m:slot_info(slot) or {},
                library = m:info() or {}}
  for _, kind in ipairs({"token", "slot", "library"}) do
    for _, p in ipairs(M.PROFILES) do
      for _, rule in ipairs(p.match) do
        if rule[kind] and fits(rule[kind], have[kind]) then return p end
      end
    end
  end
  return M.DEFAULT
end

--- The profile of the token behind a session.
---@param s userdata hsm.Session
function M.of(s)
  return M.find(s:module(), s:slot())
end

return M
