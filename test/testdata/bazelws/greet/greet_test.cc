// A test without a framework: exits 0 when every check holds.
#include <iostream>

#include "greet/greet.h"

int main() {
  const std::string got = greet::Greeting("kiln");
  const std::string want = "Hello, kiln!";
  if (got != want) {
    std::cerr << "Greeting(\"kiln\") = \"" << got << "\", want \"" << want << "\"" << std::endl;
    return 1;
  }
  std::cout << "PASS" << std::endl;
  return 0;
}
