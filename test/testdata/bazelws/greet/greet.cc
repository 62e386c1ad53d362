#include "greet/greet.h"

namespace greet {

std::string Greeting(const std::string& name) { return "Hello, " + name + "!"; }

}  // namespace greet
