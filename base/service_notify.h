// Tells the service manager how a long-running program is doing (systemd's
// Type=notify units, deploy/systemd/). Each call is a no-op when the program
// was not started with NOTIFY_SOCKET (a shell, a test, another supervisor),
// and a failure to send is ignored: the program runs the same either way.
#pragma once

#include <string_view>

namespace meridian {

// Started: the service does what it is for (listening, state opened).
// `status` is a line for `systemctl status`.
void NotifyReady(std::string_view status);
// A reload (SIGHUP) began; NotifyReady ends it.
void NotifyReloading();
// A stop began; the process exits once it has drained.
void NotifyStopping();

}  // namespace meridian
