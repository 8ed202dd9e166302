#!/usr/bin/env bash
# The routing module's union find when both sides are searched at once (route/ops.c: after a
# search of 512 objects or more a side, the next searches both sides in two threads). Two
# tokens with 600 twins and a few objects of their own: every search in one process, the
# first (in turn) and the next ones (at once), gives the union, each object once, the same
# handles each time.
NAME=route_find
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.bash"
ROUTE=${HSMSH_ROUTE_LIB:?HSMSH_ROUTE_LIB is not set (run through ctest)}
for t in fblue fgreen; do
  softhsm2-util --init-token --free --label $t --pin 1234 --so-pin 12345678 > /dev/null
done
h -e "local hsm = require('hsm')
      for _, t in ipairs({'fblue', 'fgreen'}) do
        local s = hsm.token('pkcs11:token=' .. t .. '?pin-value=1234')
        for i = 1, 600 do
          assert(s:create({CKA_CLASS = 'CKO_DATA', CKA_TOKEN = true, CKA_LABEL = 'twin' .. i, CKA_VALUE = 'x'}))
        end
        for i = 1, 3 do
          assert(s:create({CKA_CLASS = 'CKO_DATA', CKA_TOKEN = true, CKA_LABEL = t .. '-only' .. i, CKA_VALUE = 'y'}))
        end
      end"
rc_is 0
S=$work/route.state
h route init "$S" blue="pkcs11:token=fblue?module-path=$MODULE" green="pkcs11:token=fgreen?module-path=$MODULE"
rc_is 0
finds() {  # 4 whole-token searches through the module in one process
  HSMSH_ROUTE_STATE=$S h -e "local hsm = require('hsm')
    local s = hsm.token('pkcs11:token=fblue?module-path=$ROUTE&pin-value=1234')
    local first
    for i = 1, 4 do
      local l = assert(s:find_all({}))
      local seen, labels, dup = {}, {}, 0
      for _, o in ipairs(l) do
        local lab = o:get('CKA_LABEL')
        if labels[lab] then dup = dup + 1 end
        labels[lab] = true
        seen[#seen + 1] = tostring(o)
      end
      table.sort(seen)
      local key = table.concat(seen, ',')
      first = first or key
      print('find', i, #l, dup, key == first and 'same' or 'other')
    end"
  rc_is 0
  for i in 1 2 3 4; do has out "find	$i	606	0	same"; done
}
finds
finish
