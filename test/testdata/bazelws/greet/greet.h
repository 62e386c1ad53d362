#ifndef GREET_GREET_H_
#define GREET_GREET_H_

#include <string>

namespace greet {

// Greeting returns "Hello, NAME!".
std::string Greeting(const std::string& name);

}  // namespace greet

#endif  // GREET_GREET_H_
