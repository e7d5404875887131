#include "base/service_notify.h"

#include <systemd/sd-daemon.h>

#include <ctime>
#include <string>

namespace meridian {

void NotifyReady(std::string_view status) {
  std::string message = "READY=1\nSTATUS=";
  message += status;
  sd_notify(0, message.c_str());
}

void NotifyReloading() {
  // systemd 253 and later want the reload's start time (CLOCK_MONOTONIC) with
  // RELOADING=1; older ones ignore the field.
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const unsigned long long usec =
      static_cast<unsigned long long>(now.tv_sec) * 1'000'000ULL + static_cast<unsigned long long>(now.tv_nsec) / 1000ULL;
  sd_notify(0, ("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec)).c_str());
}

void NotifyStopping() { sd_notify(0, "STOPPING=1\nSTATUS=stopping"); }

}  // namespace meridian
