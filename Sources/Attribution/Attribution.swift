// Attribution module placeholder
