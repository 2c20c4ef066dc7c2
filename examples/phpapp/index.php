<?php
// The front controller: every path that is not a file lands here.
header('Content-Type: text/plain');
echo "hello from phpapp\n";
echo "path: " . ($_SERVER['REQUEST_URI'] ?? '/') . "\n";
echo "app: " . getenv('SILVER_APP_NAME') . "\n";
