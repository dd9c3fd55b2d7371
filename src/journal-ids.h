/* The MESSAGE_ID of each kind of event echod logs: generated once with `systemd-id128 new`
 * and fixed forever (operators filter on them; units/echod.catalog explains each). Never
 * change or reuse one; a new kind of event gets a new id, and an entry in the catalog. */
#pragma once

#define ECHOD_ID_READY            "66a4943ec13549c0a2c2db15236f291b"
#define ECHOD_ID_STOPPED          "02f34c3cb3084b688c34440c61c6d98e"
#define ECHOD_ID_CONNECTION_ENDED "0c68e2459c6b44839b88e6a7b6b42503"
#define ECHOD_ID_DRAIN_KILLED     "0379a6a96d084ac7a86e1e82151280ce"
#define ECHOD_ID_CHILD_SIGNALED   "0ca8602d6f4d47118ebc26f59bdf0157"
#define ECHOD_ID_REFUSED_SOURCE   "353c6aef310741cbb330c788a626606b"
#define ECHOD_ID_AT_CAP           "db3b009281cb461faea8648ca4f40a47"
#define ECHOD_ID_BACKOFF          "f159aecc95fc45e6aedf4f453ac6416f"
#define ECHOD_ID_UDP_DROPPED      "0520bffbc2de461c83cb0e8a646234cd"
#define ECHOD_ID_STARTUP_CHECK    "acd2be8bbee744ea9f3807c8bd572128"
#define ECHOD_ID_REFUSED_PROXY    "ad4d082acc0a440c89d547a985d28401"
#define ECHOD_ID_STOPPING         "3f69fe2f194549cd8631ef0688c6b528"
#define ECHOD_ID_DRAIN_TIMEOUT    "af980f24cfbb4719a4d7d42ce000598b"
#define ECHOD_ID_RELOAD_FAILED    "7994d712d855421da8407d0402d76b11"
