<?php
// The same work as cgi-bin/form.py: the query string is parsed by hand into repeated values
// (as cgi.FieldStorage does; PHP's $_GET would keep only the last "tag"), then escaped,
// a JSON snippet and a date rendered into ~2 KB of HTML.
$fields = [];
foreach (explode("&", $_SERVER["QUERY_STRING"] ?? "") as $pair) {
    if ($pair === "") continue;
    $kv = explode("=", $pair, 2);
    $fields[urldecode($kv[0])][] = urldecode($kv[1] ?? "");
}
$name = $fields["name"][0] ?? "stranger";
$tags = $fields["tag"] ?? [];
$comment = $fields["comment"][0] ?? "";
$count = max(1, min(intval($fields["n"][0] ?? "12"), 50));
$now = new DateTime("now", new DateTimeZone("UTC"));
$summary = json_encode(["at" => $now->format("c"), "name" => $name, "rows" => $count, "tags" => $tags]);
$e = fn($s) => htmlspecialchars($s, ENT_QUOTES, "UTF-8");
$rows = [];
for ($i = 0; $i < $count; $i++) {
    $tag = $tags ? $tags[$i % count($tags)] : "-";
    $rows[] = "<tr><td>$i</td><td>" . $e($name) . "</td><td>" . $e($tag) . "</td></tr>";
}
header("Content-Type: text/html; charset=utf-8");
echo "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Hello, " . $e($name) . "</title></head>\n<body>\n";
echo "<h1>Hello, " . $e($name) . "</h1>\n";
echo "<p>Rendered " . $now->format("l d F Y, H:i:s T") . ".</p>\n";
echo "<p>Your comment: <q>" . $e($comment) . "</q></p>\n<table>\n" . implode("\n", $rows) . "\n</table>\n";
echo "<script type=\"application/json\" id=\"summary\">" . $e($summary) . "</script>\n</body></html>\n";
