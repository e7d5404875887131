// Certificates for TLS tests, made with the openssl command line: a private
// CA, server certificates for the loopback addresses (valid, expired, for
// another name) and client certificates naming a terminal. Keys are EC P-256.
#pragma once

#include <string>
#include <vector>

namespace meridian::testing {

// A certificate and its private key, as PEM files.
struct CertFiles {
  std::string certificate;
  std::string key;
};

class TestCa {
 public:
  // A new self-signed CA, its files `dir`/`name`.pem and .key.
  TestCa(std::string dir, std::string name);
  // The CA certificate: the file clients trust.
  const std::string& certificate() const { return ca_.certificate; }

  // A server certificate `dir`/`stem`.pem (+ .key) with these subjectAltNames,
  // valid from now for `days` days; a negative `days` makes one that has
  // already expired. Each has a new random serial.
  CertFiles IssueServer(const std::string& stem, int days = 30,
                        const std::vector<std::string>& alt_names = {"IP:127.0.0.1", "DNS:localhost"}) const;
  // A client certificate whose subject CN is `cn` (a terminal id).
  CertFiles IssueClient(const std::string& stem, const std::string& cn, int days = 30) const;

 private:
  CertFiles Issue(const std::string& stem, const std::string& cn, int days, const std::string& extensions) const;
  std::string dir_;
  CertFiles ca_;
};

// The serial number (upper-case hex, as `openssl x509 -serial` prints it) of
// the certificate in a PEM file.
std::string CertificateSerial(const std::string& pem_file);

}  // namespace meridian::testing
