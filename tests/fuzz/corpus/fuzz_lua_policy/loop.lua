return function(a) while true do end end
