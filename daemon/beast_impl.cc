// The one translation unit that compiles Boost.Asio and Boost.Beast
// (separate compilation keeps their heavy headers out of every other file).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
