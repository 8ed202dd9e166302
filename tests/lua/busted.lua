-- Runs busted inside the hsmsh binary, so specs use the real host and embedded stdlib.
require("busted.runner")({ standalone = false })
