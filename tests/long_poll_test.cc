// Unit tests of the long-poll notifier (daemon/http.h): no change between a
// handler's look at the state and the server's subscription is lost.
#include <catch2/catch.hpp>

#include "daemon/http.h"

using namespace meridian;

TEST_CASE("a subscription fires once at the next change") {
  ChangeNotifier n;
  int fired = 0;
  n.Subscribe(n.generation(), [&] { ++fired; });
  CHECK(fired == 0);
  CHECK(n.waiting() == 1);
  n.NotifyAll();
  CHECK(fired == 1);
  CHECK(n.waiting() == 0);
  n.NotifyAll();
  CHECK(fired == 1);
}

TEST_CASE("a change between the look and the subscription fires at once") {
  ChangeNotifier n;
  uint64_t seen = n.generation();  // the handler looked at the state here…
  n.NotifyAll();                   // …the state changed before the server subscribed
  int fired = 0;
  n.Subscribe(seen, [&] { ++fired; });
  CHECK(fired == 1);
  CHECK(n.waiting() == 0);
}

TEST_CASE("an unsubscribed wait is not fired and not kept") {
  ChangeNotifier n;
  int fired = 0;
  uint64_t id = n.Subscribe(n.generation(), [&] { ++fired; });
  n.Unsubscribe(id);
  CHECK(n.waiting() == 0);
  n.NotifyAll();
  CHECK(fired == 0);
}
