// Enrolled terminals and their credentials: see enrolment.h.
#include "daemon/enrolment.h"

#include <charconv>
#include <cstdint>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/encoding.h"
#include "base/json.h"
#include "manifest/manifest.h"
#include "rollout/rollout.h"

namespace meridian {
namespace {

constexpr std::string_view kRecordPrefix = "enrolled/";
constexpr std::string_view kRevocationsMadeKey = "enrolment/revocations";
constexpr std::string_view kRegionRevocationsKey = "revoked-terminals";
// Records one Add may carry: a provisioning file is imported in pieces.
constexpr size_t kAddBatchMax = 100'000;

std::string RecordKey(std::string_view id) { return fmt::format("{}{}", kRecordPrefix, id); }

std::string_view OrDash(const std::string& s) { return s.empty() ? std::string_view("-") : std::string_view(s); }

std::string RecordLine(const EnrolledTerminal& t) {
  return fmt::format("{} {} {} {} {}", EnrolmentStateName(t.state), Base64Encode(t.key.bytes), t.changed_ms,
                     OrDash(t.profile), OrDash(t.region));
}

Result<EnrolledTerminal> ParseRecord(std::string_view key, std::string_view line) {
  auto bad = [&] { return Status::Corruption(fmt::format("{}: malformed enrolment record", key)); };
  std::string_view f[5];
  for (int i = 0; i < 5; ++i) {
    size_t space = i < 4 ? line.find(' ') : line.size();
    if (space == std::string_view::npos) return bad();
    f[i] = line.substr(0, space);
    line.remove_prefix(std::min(line.size(), space + 1));
  }
  EnrolledTerminal t;
  t.id = std::string(key.substr(kRecordPrefix.size()));
  std::optional<EnrolmentState> state = ParseEnrolmentState(f[0]);
  Result<Bytes> raw = Base64Decode(f[1]);
  Result<PublicKey> pk = raw.ok() ? PublicKey::FromBytes(*raw) : Result<PublicKey>(raw.status());
  auto [end, ec] = std::from_chars(f[2].data(), f[2].data() + f[2].size(), t.changed_ms);
  if (!state || !pk.ok() || ec != std::errc() || end != f[2].data() + f[2].size()) return bad();
  t.state = *state;
  t.key = *pk;
  if (f[3] != "-") t.profile = std::string(f[3]);
  if (f[4] != "-") t.region = std::string(f[4]);
  if (!ValidateEnrolledTerminal(t).ok()) return bad();
  return t;
}

}  // namespace

std::string_view EnrolmentStateName(EnrolmentState state) {
  switch (state) {
    case EnrolmentState::kPending: return "pending";
    case EnrolmentState::kAccepted: return "accepted";
    case EnrolmentState::kRevoked: return "revoked";
  }
  return "?";
}

std::optional<EnrolmentState> ParseEnrolmentState(std::string_view name) {
  for (EnrolmentState s : {EnrolmentState::kPending, EnrolmentState::kAccepted, EnrolmentState::kRevoked}) {
    if (EnrolmentStateName(s) == name) return s;
  }
  return std::nullopt;
}

Status ValidateEnrolledTerminal(const EnrolledTerminal& t) {
  if (!IsValidTerminalId(t.id)) return Status::InvalidArgument(fmt::format("terminal id '{}' is not valid", t.id));
  if (!t.profile.empty() && !IsValidRegionOrProfile(t.profile)) {
    return Status::InvalidArgument(fmt::format("terminal '{}': profile '{}' is not valid", t.id, t.profile));
  }
  if (!t.region.empty() && !IsValidRegionOrProfile(t.region)) {
    return Status::InvalidArgument(fmt::format("terminal '{}': region '{}' is not valid", t.id, t.region));
  }
  return Status::Ok();
}

// A record is an id and a few numbers: profiles and regions are interned,
// so a million terminals cost about a hundred bytes each.
struct Enrolment::Impl {
  Store& store;
  const Clock& clock;
  EnrolmentOptions o;
  std::optional<SecretKey> online;  // the origin's; none in a region

  struct Record {
    PublicKey key;
    uint16_t profile = 0, region = 0;  // into names
    EnrolmentState state = EnrolmentState::kPending;
    int64_t changed_ms = 0;
    int64_t last_request_ms = 0;  // the newest credential request accepted (memory only)
  };
  mutable std::mutex mu;
  std::map<std::string, Record, std::less<>> records;
  std::vector<std::string> names{""};  // index 0: none
  std::unordered_map<std::string, uint16_t> name_index{{"", 0}};
  uint64_t counts[3] = {};  // records per EnrolmentState
  std::map<std::string, int64_t, std::less<>> revoked;  // id -> when, the recent ones (origin) or the adopted ones (region)
  uint64_t revocations_made = 0;

  Impl(Store& s, const Clock& c, EnrolmentOptions opts) : store(s), clock(c), o(opts) {}

  Result<uint16_t> Intern(const std::string& name) {
    auto it = name_index.find(name);
    if (it != name_index.end()) return it->second;
    if (names.size() > UINT16_MAX) return Status::ResourceExhausted("too many distinct profiles and regions");
    names.push_back(name);
    return name_index[name] = static_cast<uint16_t>(names.size() - 1);
  }

  EnrolledTerminal View(const std::string& id, const Record& r) const {
    return EnrolledTerminal{id, r.key, names[r.profile], names[r.region], r.state, r.changed_ms};
  }

  // Puts `t` in memory (the caller writes it).
  Status Put(const EnrolledTerminal& t) {
    Result<uint16_t> profile = Intern(t.profile), region = Intern(t.region);
    if (!profile.ok()) return profile.status();
    if (!region.ok()) return region.status();
    auto [it, added] = records.try_emplace(t.id);
    if (!added) --counts[static_cast<int>(it->second.state)];
    ++counts[static_cast<int>(t.state)];
    Record& r = it->second;
    r.key = t.key;
    r.profile = *profile;
    r.region = *region;
    r.state = t.state;
    r.changed_ms = t.changed_ms;
    if (t.state == EnrolmentState::kRevoked) {
      revoked[t.id] = t.changed_ms;
    } else {
      revoked.erase(t.id);
    }
    return Status::Ok();
  }

  // Moves a terminal to `state`, synced; NotFound for an unknown one, unless
  // it is revoked (a terminal known by its certificate only).
  Status Change(std::string_view id, EnrolmentState state) {
    std::lock_guard lock(mu);
    auto it = records.find(id);
    EnrolledTerminal t{std::string(id), PublicKey{}, "", "", EnrolmentState::kPending, 0};
    if (it != records.end()) {
      t = View(it->first, it->second);
    } else if (state != EnrolmentState::kRevoked || !IsValidTerminalId(id)) {
      return Status::NotFound(fmt::format("terminal '{}' is not enrolled", id));
    } else if (records.size() >= o.enrolled_max) {
      return Status::ResourceExhausted("the enrolment registry is full");
    }
    if (t.state == state) return Status::Ok();
    t.state = state;
    t.changed_ms = clock.NowUnixMillis();
    StateOps ops{{RecordKey(t.id), RecordLine(t)}};
    if (state == EnrolmentState::kRevoked) {
      ops.emplace_back(std::string(kRevocationsMadeKey), std::to_string(revocations_made + 1));
    }
    MERIDIAN_RETURN_IF_ERROR(store.WriteState(ops));
    if (state == EnrolmentState::kRevoked) ++revocations_made;
    return Put(t);
  }
};

Enrolment::Enrolment(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Enrolment::~Enrolment() = default;

Result<std::unique_ptr<Enrolment>> Enrolment::OpenOrigin(Store& store, const Clock& clock, SecretKey online,
                                                         EnrolmentOptions options) {
  auto impl = std::make_unique<Impl>(store, clock, options);
  impl->online = std::move(online);
  MERIDIAN_RETURN_IF_ERROR(ForEachState(store, kRecordPrefix, [&](const std::string& key, const std::string& line) {
    Result<EnrolledTerminal> t = ParseRecord(key, line);
    return t.ok() ? impl->Put(*t) : t.status();
  }));
  Result<std::string> made = store.GetState(kRevocationsMadeKey);
  if (made.ok()) {
    auto [end, ec] = std::from_chars(made->data(), made->data() + made->size(), impl->revocations_made);
    if (ec != std::errc() || end != made->data() + made->size()) {
      return Status::Corruption(std::string(kRevocationsMadeKey) + ": not a number");
    }
  } else if (made.status().code() != Status::Code::kNotFound) {
    return made.status();
  }
  return std::unique_ptr<Enrolment>(new Enrolment(std::move(impl)));
}

Result<std::unique_ptr<Enrolment>> Enrolment::OpenRegion(Store& store, const Clock& clock) {
  auto impl = std::make_unique<Impl>(store, clock, EnrolmentOptions{});
  Result<std::string> held = store.GetState(kRegionRevocationsKey);
  if (held.ok()) {
    auto corrupt = [](const Status& st) {
      return Status::Corruption(fmt::format("{}: {}", kRegionRevocationsKey, st.message()));
    };
    Result<RegionRevocations> record = ParseRegionRevocations(*held);
    if (!record.ok()) return corrupt(record.status());
    impl->revocations_made = record->made;
    for (Revocation& r : record->revoked) impl->revoked[std::move(r.terminal_id)] = r.revoked_ms;
  } else if (held.status().code() != Status::Code::kNotFound) {
    return held.status();
  }
  return std::unique_ptr<Enrolment>(new Enrolment(std::move(impl)));
}

Status Enrolment::Add(std::vector<EnrolledTerminal> terminals) {
  Impl& d = *impl_;
  if (terminals.size() > kAddBatchMax) {
    return Status::InvalidArgument(fmt::format("at most {} terminals at a time", kAddBatchMax));
  }
  int64_t now = d.clock.NowUnixMillis();
  StateOps ops;
  ops.reserve(terminals.size());
  for (EnrolledTerminal& t : terminals) {
    MERIDIAN_RETURN_IF_ERROR(ValidateEnrolledTerminal(t));
    t.state = EnrolmentState::kAccepted;
    t.changed_ms = now;
    ops.emplace_back(RecordKey(t.id), RecordLine(t));
  }
  std::lock_guard lock(d.mu);
  size_t adding = 0;
  for (const EnrolledTerminal& t : terminals) adding += d.records.count(t.id) == 0;
  if (d.records.size() + adding > d.o.enrolled_max) {
    return Status::ResourceExhausted(fmt::format("at most {} terminals may be enrolled", d.o.enrolled_max));
  }
  MERIDIAN_RETURN_IF_ERROR(d.store.WriteState(ops));
  for (const EnrolledTerminal& t : terminals) MERIDIAN_RETURN_IF_ERROR(d.Put(t));
  return Status::Ok();
}

Status Enrolment::Accept(std::string_view id) { return impl_->Change(id, EnrolmentState::kAccepted); }
Status Enrolment::Revoke(std::string_view id) { return impl_->Change(id, EnrolmentState::kRevoked); }

Result<CredentialGrant> Enrolment::RequestCredential(std::string_view id, std::string_view authorization) {
  Impl& d = *impl_;
  if (!d.online) return Status::FailedPrecondition("credentials are issued by the origin");
  if (!IsValidTerminalId(id)) return Status::InvalidArgument("invalid terminal id");
  Result<CredentialRequest> request = VerifyCredentialRequest(authorization, id);
  if (!request.ok()) return request.status();
  int64_t now = d.clock.NowUnixMillis();
  std::lock_guard lock(d.mu);
  auto it = d.records.find(id);
  if (it == d.records.end()) {
    if (d.counts[static_cast<int>(EnrolmentState::kPending)] >= d.o.pending_max) {
      return Status::ResourceExhausted("too many terminals await acceptance; ask an operator");
    }
    if (d.records.size() >= d.o.enrolled_max) return Status::ResourceExhausted("the enrolment registry is full");
    EnrolledTerminal t{std::string(id), request->key, "", "", EnrolmentState::kPending, now};
    MERIDIAN_RETURN_IF_ERROR(d.store.WriteState({{RecordKey(t.id), RecordLine(t)}}));
    MERIDIAN_RETURN_IF_ERROR(d.Put(t));
    return CredentialGrant{};
  }
  Impl::Record& r = it->second;
  if (!(r.key == request->key)) {
    return Status::PermissionDenied(fmt::format("terminal '{}' is enrolled with another key", id));
  }
  switch (r.state) {
    case EnrolmentState::kPending: return CredentialGrant{};
    case EnrolmentState::kRevoked: return Status::PermissionDenied(fmt::format("terminal '{}' is revoked", id));
    case EnrolmentState::kAccepted: break;
  }
  if (request->time_ms <= r.last_request_ms || request->time_ms < now - d.o.request_window_ms ||
      request->time_ms > now + d.o.request_window_ms) {
    return Status::PermissionDenied(fmt::format(
        "credential request of '{}': its time {} is stale, replayed or too far from this daemon's clock ({})", id,
        request->time_ms, now));
  }
  r.last_request_ms = request->time_ms;
  TerminalCredential c{std::string(id), d.names[r.region], d.names[r.profile], now, now + d.o.credential_lifetime_ms};
  return CredentialGrant{IssueCredential(c, *d.online), c.expires_ms};
}

std::vector<EnrolledTerminal> Enrolment::List(std::string_view after, size_t limit,
                                              std::optional<EnrolmentState> state) const {
  const Impl& d = *impl_;
  std::vector<EnrolledTerminal> out;
  std::lock_guard lock(d.mu);
  for (auto it = d.records.upper_bound(after); it != d.records.end() && out.size() < limit; ++it) {
    if (!state || it->second.state == *state) out.push_back(d.View(it->first, it->second));
  }
  return out;
}

std::map<EnrolmentState, uint64_t> Enrolment::Counts() const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  std::map<EnrolmentState, uint64_t> out;
  for (EnrolmentState s : {EnrolmentState::kPending, EnrolmentState::kAccepted, EnrolmentState::kRevoked}) {
    out[s] = d.counts[static_cast<int>(s)];
  }
  return out;
}

std::vector<Revocation> Enrolment::RecentRevocations() const {
  const Impl& d = *impl_;
  // A minute's slack over the lifetime, as credentials allow for clocks. A
  // region relays all it adopted (the origin chose them).
  int64_t since = d.online ? d.clock.NowUnixMillis() - d.o.credential_lifetime_ms - 60'000 : INT64_MIN;
  std::vector<Revocation> out;
  std::lock_guard lock(d.mu);
  for (const auto& [id, when] : d.revoked) {
    if (when >= since) out.push_back({id, when});
  }
  return out;
}

uint64_t Enrolment::revocations_made() const {
  std::lock_guard lock(impl_->mu);
  return impl_->revocations_made;
}

Status Enrolment::AdoptRevocations(std::vector<Revocation> revocations, uint64_t made) {
  Impl& d = *impl_;
  std::map<std::string, int64_t, std::less<>> next;
  for (Revocation& r : revocations) next[std::move(r.terminal_id)] = r.revoked_ms;
  std::lock_guard lock(d.mu);
  if (next == d.revoked && made == d.revocations_made) return Status::Ok();
  // An upstream that has seen fewer revocations than were adopted here is
  // behind (a region restored from a backup, cut off from the origin, that
  // this one failed over to): taking its list would admit revoked terminals.
  if (made < d.revocations_made) return Status::Ok();
  std::vector<Revocation> list;
  for (const auto& [id, when] : next) list.push_back({id, when});
  std::string record = RegionRevocationsToJson({made, std::move(list)});
  MERIDIAN_RETURN_IF_ERROR(d.store.WriteState({{std::string(kRegionRevocationsKey), std::move(record)}}));
  d.revoked = std::move(next);
  d.revocations_made = made;
  return Status::Ok();
}

Status Enrolment::Admit(std::string_view id, int64_t issued_ms) const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  if (d.online) {
    auto it = d.records.find(id);
    if (it != d.records.end() && it->second.state == EnrolmentState::kAccepted) return Status::Ok();
    return Status::PermissionDenied(fmt::format("terminal '{}' is not enrolled, or was revoked", id));
  }
  auto it = d.revoked.find(id);
  if (it != d.revoked.end() && it->second >= issued_ms) {
    return Status::PermissionDenied(fmt::format("terminal '{}' was revoked", id));
  }
  return Status::Ok();
}

Status Enrolment::AdmitCertified(std::string_view id) const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.online ? d.records.find(id) : d.records.end();
  bool revoked = d.online ? it != d.records.end() && it->second.state == EnrolmentState::kRevoked : d.revoked.count(id) != 0;
  if (revoked) return Status::PermissionDenied(fmt::format("terminal '{}' was revoked", id));
  return Status::Ok();
}

}  // namespace meridian
