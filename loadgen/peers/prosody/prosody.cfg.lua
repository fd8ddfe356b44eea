-- Prosody 0.12 for loadgen on loopback, written from scratch (Debian's
-- stock config enables mod_limits, which throttles each c2s connection to
-- 10 kB/s). loadgen's tests and `loadgen bench` start it as:
--   setpriv --reuid=prosody --regid=prosody --init-groups \
--     prosody -F --config THIS_FILE
-- with PROSODY_DATA (data directory), PROSODY_PORT (c2s port) and
-- PROSODY_PID (pid file) in the environment. Only loopback.

local data = os.getenv("PROSODY_DATA") or "/tmp/loadgen-prosody"
local port = tonumber(os.getenv("PROSODY_PORT") or "5222")

data_path = data
pidfile = os.getenv("PROSODY_PID") or (data .. "/prosody.pid")
certificates = data
log = { warn = "*console" }

interfaces = { "127.0.0.1" }
c2s_ports = { port }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }

-- Plaintext on loopback, as the Starling side of a comparison runs.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"

allow_registration = true
min_seconds_between_registrations = 0

network_settings = { tcp_backlog = 4096 }

modules_enabled = {
    "roster"; "saslauth"; "disco"; "ping"; "register"; "pep"; "presence";
    "private"; "blocklist";
}
modules_disabled = { "limits"; "s2s"; "offline"; "c2s_limits" }

pep_max_items = 256

VirtualHost "loadgen.localhost"
