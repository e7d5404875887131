// The openssl commands behind tests/certs.h.
#include "tests/certs.h"

#include <random>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/bytes.h"
#include "tests/harness.h"

namespace meridian::testing {
namespace {

constexpr const char* kOpenssl = "/usr/bin/openssl";

std::string RunOpenssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{kOpenssl};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = Run(argv, std::chrono::seconds(30));
  if (r.exit_code != 0) throw std::runtime_error(fmt::format("openssl {} failed: {}", args.front(), r.err));
  return r.out;
}

// A new EC key and a certificate request for subject CN=`cn`.
void NewKeyAndRequest(const std::string& key, const std::string& csr, const std::string& cn) {
  RunOpenssl({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out",
              csr, "-subj", "/CN=" + cn});
}

}  // namespace

TestCa::TestCa(std::string dir, std::string name) : dir_(std::move(dir)) {
  ca_ = {dir_ + "/" + name + ".pem", dir_ + "/" + name + ".key"};
  RunOpenssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_.key,
              "-out", ca_.certificate, "-subj", "/CN=Meridian test CA " + name, "-days", "365", "-addext",
              "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
}

CertFiles TestCa::Issue(const std::string& stem, const std::string& cn, int days, const std::string& extensions) const {
  CertFiles out{dir_ + "/" + stem + ".pem", dir_ + "/" + stem + ".key"};
  std::string csr = dir_ + "/" + stem + ".csr", ext = dir_ + "/" + stem + ".ext";
  NewKeyAndRequest(out.key, csr, cn);
  WriteFile(ext, AsBytes(extensions));
  std::random_device random;
  std::string serial = fmt::format("0x{:08x}{:08x}", random(), random());
  // A negative -days puts notAfter before now (and before notBefore): expired.
  RunOpenssl({"x509", "-req", "-in", csr, "-CA", ca_.certificate, "-CAkey", ca_.key, "-set_serial", serial, "-days",
              std::to_string(days), "-extfile", ext, "-out", out.certificate});
  return out;
}

CertFiles TestCa::IssueServer(const std::string& stem, int days, const std::vector<std::string>& alt_names) const {
  return Issue(stem, "meridiand test server", days,
               fmt::format("subjectAltName={}\nextendedKeyUsage=serverAuth\n", fmt::join(alt_names, ",")));
}

CertFiles TestCa::IssueClient(const std::string& stem, const std::string& cn, int days) const {
  return Issue(stem, cn, days, "extendedKeyUsage=clientAuth\n");
}

std::string CertificateSerial(const std::string& pem_file) {
  std::string out = RunOpenssl({"x509", "-in", pem_file, "-noout", "-serial"});  // "serial=0A1B…\n"
  size_t eq = out.find('=');
  std::string serial = eq == std::string::npos ? out : out.substr(eq + 1);
  while (!serial.empty() && serial.back() == '\n') serial.pop_back();
  return serial;
}

}  // namespace meridian::testing
