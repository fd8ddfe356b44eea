-- Prosody 0.12 as b.example, the other domain of the federation interop
-- test and of loadgen's federated runs, written for this project. It runs
-- inside the network namespace that scripts/federation-netns makes, as:
--   setpriv --reuid=prosody --regid=prosody --init-groups \
--     prosody -F --config THIS_FILE
-- with PROSODY_DATA (data directory, holding b.example.crt/.key),
-- PROSODY_ADDR (its address) and PROSODY_PID in the environment.

local data = os.getenv("PROSODY_DATA") or "/tmp/federation-prosody"
local addr = os.getenv("PROSODY_ADDR") or "127.0.0.3"

data_path = data
pidfile = os.getenv("PROSODY_PID") or (data .. "/prosody.pid")
certificates = data
log = { warn = "*console"; info = data .. "/prosody.log" }

interfaces = { addr }
c2s_ports = { 5222 }
s2s_ports = { 5269 }
component_ports = { }
http_ports = { }
https_ports = { }

-- Clients on loopback inside the namespace: plaintext, as loadgen runs.
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
allow_registration = true
min_seconds_between_registrations = 0

-- Server streams: TLS required (Prosody's default), but a self-signed
-- certificate is accepted and the peer authenticated by dialback.
s2s_require_encryption = true
s2s_secure_auth = false

network_settings = { tcp_backlog = 4096 }

modules_enabled = {
    "roster"; "saslauth"; "tls"; "dialback"; "disco"; "ping"; "register";
    "pep"; "presence"; "private"; "blocklist"; "s2s";
}
modules_disabled = { "limits"; "offline"; "c2s_limits" }

pep_max_items = 256

VirtualHost "b.example"
    ssl = {
        certificate = data .. "/b.example.crt";
        key = data .. "/b.example.key";
    }
