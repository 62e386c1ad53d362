#include <iostream>

#include "greet/greet.h"

int main(int argc, char** argv) {
  std::cout << greet::Greeting(argc > 1 ? argv[1] : "kiln") << std::endl;
  return 0;
}
